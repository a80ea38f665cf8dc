"""Few-shot image classification: the task family, the CNN, and the chip commands on a tiny CNN."""

import json
import shutil

import jax
import numpy as np
import pytest
import yaml
from mock_lab import round_trip
from PIL import Image
from typer.testing import CliRunner

from pcmmeta.cli.app import app
from pcmmeta.core.networks.cnn import crossbar_conv
from pcmmeta.experiment.chip import load_array
from pcmmeta.experiment.recipe import validate
from pcmmeta.experiment.train import build_experiment, load_run

runner = CliRunner()


def tiny_images_recipe(**task):
    return validate({
        "name": "tiny-cnn", "seed": 0, "mode": "pcm",
        "task": {"family": "images", "ways": 3, "shots": 2, "queries": 3, "glyph_classes": 30, "glyph_drawings": 6, **task},
        "network": {"kind": "cnn", "channels": 4, "blocks": 2},
        "inner": {"rule": "quantized-sgd", "steps": 2, "lr": 0.5},
        "maml": {"quantized_bits": 4},
        "train": {"iterations": 3, "meta_batch": 4, "chunk_tasks": 2, "warmup": 0, "checkpoint_every": 3, "log_every": 1},
        "eval": {"tasks": 6, "plot_tasks": 1},
    })


@pytest.fixture(scope="module")
def family():
    return build_experiment(tiny_images_recipe()).family


def test_tasks_have_permuted_labels_and_disjoint_support_and_query(family):
    tasks = family.sample(jax.random.key(0), 64)
    assert tasks.x_support.shape == (64, 6, 28, 28) and tasks.x_query.shape == (64, 9, 28, 28)
    ys, yq = np.asarray(tasks.y_support), np.asarray(tasks.y_query)
    for t in range(64):
        assert sorted(set(ys[t])) == [0, 1, 2] and np.bincount(yq[t]).tolist() == [3, 3, 3]
    # the same class gets different labels in different tasks (labels are permuted per task)
    label_of = {}
    for t in range(64):
        classes = np.asarray(tasks.params[t])
        first_label = ys[t].reshape(3, 2)[:, 0]
        for c, label in zip(classes, first_label):
            label_of.setdefault(int(c), set()).add(int(label))
    assert any(len(v) > 1 for v in label_of.values())
    # support and query images of a class are different drawings
    xs, xq = np.asarray(tasks.x_support[0]), np.asarray(tasks.x_query[0])
    for s in xs:
        assert not any(np.array_equal(s, q) for q in xq)


def test_rotated_classes_are_rotations(family):
    base = family.images.shape[0]
    tasks = family.sample(jax.random.key(3), 200)
    classes = np.asarray(tasks.params).ravel()
    assert classes.max() >= base  # rotated classes are drawn
    assert family.n_classes == 4 * base


def test_train_validation_and_test_classes_are_disjoint(family):
    train, validation, test = (np.asarray(family.split(name).images) for name in ("train", "validation", "test"))
    assert train.shape[0] + validation.shape[0] + test.shape[0] == 30
    assert validation.shape[0] == round(0.15 * 21) and test.shape[0] == 9  # carved out of the 21 training classes
    for held_out, others in ((test, (train, validation)), (validation, (train,))):
        for c in held_out:
            assert not any(np.array_equal(c[0], t[0]) for part in others for t in part)
    assert family.held_out().which == "test"


def test_crossbar_convolution_equals_lax_conv():
    x = jax.random.normal(jax.random.key(0), (2, 7, 7, 3))
    w = jax.random.normal(jax.random.key(1), (9 * 3 + 1, 5))
    kernel = w[:-1].reshape(3, 3, 3, 5)  # rows: (dy, dx, c_in)
    ref = jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")) + w[-1]
    np.testing.assert_allclose(np.asarray(crossbar_conv(x, w)), np.asarray(ref), rtol=1e-4, atol=1e-4)


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def write_class_folders(root, n_classes, per_class, size=32):
    rng = np.random.default_rng(0)
    for c in range(n_classes):
        folder = root / f"class{c}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            img = np.full((size, size), 255, np.uint8)
            r0 = 4 + 3 * c
            img[r0 : r0 + 4, 4 + i : 28] = 0  # a bar per class, black on white
            img[rng.integers(0, size, 5), rng.integers(0, size, 5)] = 0
            Image.fromarray(img).save(folder / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def deployed_cnn(tmp_path_factory):
    root = tmp_path_factory.mktemp("cnn")
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_images_recipe()))
    runs = root / "runs"
    result = invoke("meta-train", path, "--runs-dir", runs, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{"):])
    assert report["metric"] == "accuracy" and len(report["accuracy_per_step"]) == 3 and report["chance"] == pytest.approx(1 / 3)
    result = invoke("deploy", "--runs-dir", runs, "--json")
    assert result.exit_code == 0, result.output
    run_dir = runs / (runs / "LATEST").read_text().strip()
    return root, runs, run_dir, json.loads(result.stdout)


def test_a_lab_runs_the_cnn_through_the_exchange_files(deployed_cnn, tmp_path):
    _, _, trained_run, _ = deployed_cnn
    run_dir = shutil.copytree(trained_run, tmp_path / "runs" / trained_run.name)
    steps = round_trip(invoke, run_dir, tmp_path, task_seed=1, drift_tasks=8)
    drift = steps["drift"]  # drift-eval on the measured chip: accuracy per time and condition
    assert drift["metric"] == "accuracy" and len(drift["results"]) == 8
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in drift["results"])
    layers = {layer["name"]: layer for layer in json.loads((tmp_path / "export" / "manifest.json").read_text())["layers"]}
    # convolutions as their im2col crossbars: 9·c_in + 1 rows (the bias row last), c_out columns
    assert (layers["conv1"]["rows"], layers["conv1"]["cols"]) == (9 * 1 + 1, 4)
    assert (layers["conv2"]["rows"], layers["conv2"]["cols"], layers["out"]["role"]) == (9 * 4 + 1, 4, "head")
    # (a briefly trained head may want less than half a pulse anywhere: the plan may be empty)
    assert steps["plan"]["devices"] == len((tmp_path / "plan.csv").read_text().splitlines()) - 1
    assert steps["adapted"]["metric"] == "accuracy" and steps["import"]["measurement"]["devices"] == steps["export"]["devices"]
    assert 0.0 <= steps["adapted"]["after"]["accuracy"] <= 1.0
    result = invoke("export", "--format", "nir", tmp_path / "cnn.nir", "--run", run_dir)
    assert result.exit_code == 2 and "NIR export is for the spiking networks" in result.output
    assert not (tmp_path / "cnn.nir").exists()


def test_deploy_programs_every_cnn_layer(deployed_cnn):
    _, _, run_dir, report = deployed_cnn
    exp, state = load_run(run_dir)
    net = state.network
    assert set(report["layers"]) == {"conv1", "conv2", "out"}
    assert report["n_devices"] == net.n_devices() == sum(v["devices"] for v in report["layers"].values())
    assert report["layers"]["conv2"]["devices"] == 2 * (9 * 4 + 1) * 4


def test_adapt_a_classifier_touches_only_the_head_and_reports_per_class_accuracy(deployed_cnn):
    root, runs, run_dir, _ = deployed_cnn
    result = invoke("adapt", "--runs-dir", runs, "--task-seed", 2, "--json", "--plot", root / "adapt.png")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["metric"] == "accuracy" and len(report["per_step"]) == 3
    assert set(report["breakdown"]) == {"label 0 accuracy", "label 1 accuracy", "label 2 accuracy"}
    assert (root / "adapt.png").stat().st_size > 10_000
    exp, state = load_run(run_dir)
    before = load_array(run_dir / "deployed.eqx", state.network)
    after = load_array(run_dir / report["adapted_array"].split("/")[-1], state.network)
    for layer in ("conv1", "conv2"):
        np.testing.assert_array_equal(np.asarray(before.layers[layer].g_prog), np.asarray(after.layers[layer].g_prog))
    dn = np.asarray(after.layers["out"].n_set) - np.asarray(before.layers["out"].n_set)
    assert dn.min() >= 0 and int(dn.sum()) == report["total_pulses"]


def test_adapt_with_a_support_folder(deployed_cnn, tmp_path):
    _, runs, _, _ = deployed_cnn
    support = write_class_folders(tmp_path / "support", 3, 2)
    result = invoke("adapt", "--runs-dir", runs, "--support", support, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["set_name"] == "support" and report["shots"] == 2 and report["support_examples"] == 6  # 2 per class, 3 classes
    wrong = write_class_folders(tmp_path / "four", 4, 2)
    result = invoke("adapt", "--runs-dir", runs, "--support", wrong)
    assert result.exit_code == 2 and "4 class folders, this network classifies 3" in result.output


def bad_data_case(tmp_path, case):
    data = tmp_path / "data"
    if case == "missing":
        return {"data": str(tmp_path / "nowhere")}, "nowhere"
    if case == "too-few-images":
        write_class_folders(data, 4, 8)
        for p in sorted((data / "class1").iterdir())[3:]:
            p.unlink()
        return {"data": str(data), "rotations": False}, "class1: 3 readable images"
    if case == "not-images":
        write_class_folders(data, 4, 8)
        for c in range(4):
            for i in range(3):
                (data / f"class{c}" / f"junk{i}.png").write_bytes(b"not a png")
        return {"data": str(data), "rotations": False}, "junk"
    if case == "too-few-classes":
        write_class_folders(data, 2, 8)
        return {"data": str(data), "eval_data": str(data), "rotations": False}, "a 3-way task needs at least 3"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["missing", "too-few-images", "not-images", "too-few-classes"])
def test_bad_image_data_one_line_exit_2_nothing_written(tmp_path, case):
    task, message = bad_data_case(tmp_path, case)
    recipe = tiny_images_recipe(**task)
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    result = invoke("meta-train", path, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert not (tmp_path / "runs").exists()


def test_a_run_from_before_the_plugin_redesign_fails_with_one_line(tmp_path):
    run = tmp_path / "runs" / "old-run"
    run.mkdir(parents=True)
    (run / "recipe.yaml").write_text("name: old\nmaml:\n  inner_steps: 1\n")
    (run / "checkpoint.eqx").write_bytes(b"\x00" * 64)
    (run / "deployed.eqx").write_bytes(b"\x00" * 64)
    for command in ("deploy", "adapt", "drift-eval"):
        result = invoke(command, "--run", run)
        assert result.exit_code == 2 and "made by an older version of pcmmeta" in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1
    result = invoke("meta-train", "--resume", "--run", run)
    assert result.exit_code == 2 and "made by an older version of pcmmeta" in result.output


def test_batch_norm_makes_a_channel_gain_irrelevant():
    """With network.batch_norm each convolution's output is normalised per channel over the set:
    scaling a channel's weights (a uniform drift of its conductances) leaves the features as they
    were; without it the features change."""
    from pcmmeta.core.crossbar import pair_weights

    x = jax.random.uniform(jax.random.key(0), (6, 28, 28, 1))
    for batch_norm in (True, False):
        recipe = tiny_images_recipe()
        recipe["network"]["batch_norm"] = batch_norm
        exp = build_experiment(recipe)
        net = exp.network
        dev = exp.meta.device
        weights = {n: pair_weights(net.layers[n], dev, net.scales[n]) for n in net.body}
        gains = jax.random.uniform(jax.random.key(1), (weights["conv1"].shape[-1],), minval=0.4, maxval=0.9)
        drifted = {**weights, "conv1": weights["conv1"] * gains}
        a, b = np.asarray(net.features(weights, x)), np.asarray(net.features(drifted, x))
        if batch_norm:
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
            assert np.abs(a).max() > 0.1
        else:
            assert np.abs(a - b).max() > 1e-2


def test_shared_head_init_keeps_one_column_for_every_class():
    """With network.shared_head_init the head's learned start is one column for all classes: after
    meta-training steps the stored columns are still equal and the programmed head gives every
    class the same logit (chance, loss ln N before adaptation). Without it the columns part."""
    from pcmmeta.core.crossbar import pair_weights
    from pcmmeta.experiment.train import init_state, make_optimizer, make_train_step

    spread = {}
    for shared in (True, False):
        recipe = tiny_images_recipe()
        recipe["network"]["shared_head_init"] = shared
        recipe["mode"] = "ideal"
        exp = build_experiment(recipe)
        opt = make_optimizer(exp.train)
        state = init_state(exp, opt)
        step = make_train_step(exp, opt, exp.train.meta_batch)
        for _ in range(3):
            state, loss, _ = step(state, exp.family)
        assert np.isfinite(float(loss))
        net = state.network
        head = np.asarray(net.layers["out"])
        spread[shared] = np.abs(head - head[..., :1]).max()
        programmed = net.offline_layers()
        if shared:
            # the programmed head is the stored one: one column, repeated
            np.testing.assert_allclose(np.asarray(programmed["out"]), head, atol=1e-6)
            w = np.asarray(pair_weights(programmed["out"], exp.meta.device, net.scales["out"]))
            features = np.abs(np.asarray(jax.random.normal(jax.random.key(2), (5, w.shape[0] - 1))))
            logits = features @ w[:-1] + w[-1]
            np.testing.assert_allclose(logits, logits[:, :1].repeat(w.shape[1], axis=1), atol=1e-5)
        else:
            assert programmed["out"] is net.layers["out"]
    assert spread[True] < 1e-6
    assert spread[False] > 1e-4  # meta-training moved the columns apart: the test can see a difference
