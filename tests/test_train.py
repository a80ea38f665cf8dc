import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import equinox as eqx
import jax
import numpy as np
import pytest
from tiny import tiny_recipe
from typer.testing import CliRunner

from pcmmeta.cli.app import app
from pcmmeta.errors import UserInputError
from pcmmeta.experiment.train import (
    NaNLossError,
    build_experiment,
    chunk_size,
    evaluate,
    init_state,
    load_checkpoint,
    make_optimizer,
    make_train_step,
    save_checkpoint,
    start_run,
    train,
)

runner = CliRunner()


def leaves(tree):
    return [np.asarray(a) for a in jax.tree.leaves(eqx.filter(tree, eqx.is_array))]


@pytest.mark.slow
def test_tiny_recipe_trains_and_held_out_loss_drops(tmp_path):
    recipe = tiny_recipe(
        train__iterations=150,
        train__meta_batch=16,
        train__checkpoint_every=150,
        train__learning_rate=0.1,
        network__hidden=[16, 16],
        network__time_steps=20,
        eval__tasks=100,
    )
    exp = build_experiment(recipe)
    before = evaluate(exp, init_state(exp, make_optimizer(exp.train)).network)
    outcome = train(recipe, start_run(recipe, tmp_path), evaluate_at_end=True)
    after = outcome.evaluation
    assert after.after() < 0.9 * before.after(), (before, after)
    assert after.baselines["mse_zero"] == pytest.approx(before.baselines["mse_zero"])
    run = outcome.run_dir
    for name in (
        "recipe.yaml",
        "checkpoint.eqx",
        "metrics.jsonl",
        "training-curve.png",
        "evaluation.json",
        "evaluation.png",
    ):
        assert (run / name).is_file(), name
    assert (tmp_path / "LATEST").read_text().strip() == run.name
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["iteration"] == 150


def test_checkpoint_round_trip_is_bitwise(tmp_path):
    recipe = tiny_recipe()
    exp = build_experiment(recipe)
    state = init_state(exp, make_optimizer(exp.train))
    outcome = train(recipe, start_run(recipe, tmp_path), evaluate_at_end=False)
    save_checkpoint(tmp_path / "c.eqx", outcome.state)
    loaded = load_checkpoint(tmp_path / "c.eqx", state)
    for a, b in zip(leaves(outcome.state), leaves(loaded)):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert int(loaded.iteration) == 6


@pytest.mark.slow
def test_resume_continues_the_same_trajectory(tmp_path):
    straight = train(tiny_recipe(), start_run(tiny_recipe(), tmp_path / "a"), evaluate_at_end=False).state
    run = start_run(tiny_recipe(), tmp_path / "b")
    calls = []

    def stop_after_three(it, loss, record):
        calls.append(it)
        if it == 3:
            raise KeyboardInterrupt  # Ctrl-C

    first = train(tiny_recipe(), run, on_iteration=stop_after_three, evaluate_at_end=False)
    assert first.interrupted and int(first.state.iteration) == 3
    resumed = train(tiny_recipe(), run, resume=True, evaluate_at_end=False).state
    assert int(resumed.iteration) == 6
    for a, b in zip(leaves(straight), leaves(resumed)):
        assert np.array_equal(a, b)
    iterations = [json.loads(l)["iteration"] for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert iterations == [1, 2, 3, 4, 5, 6]


@pytest.mark.slow
def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    import pcmmeta.experiment.train as T

    real = T.make_train_step

    def poisoned(exp, opt, mb):
        step = real(exp, opt, mb)

        def wrapped(state, family):
            new, loss, means = step(state, family)
            return new, (loss * np.nan if int(new.iteration) == 5 else loss), means

        return wrapped

    monkeypatch.setattr(T, "make_train_step", poisoned)
    recipe = tiny_recipe()
    run = start_run(recipe, tmp_path)
    with pytest.raises(NaNLossError, match="iteration 5"):
        train(recipe, run)
    exp = build_experiment(recipe)
    assert int(load_checkpoint(run / "checkpoint.eqx", init_state(exp, make_optimizer(exp.train))).iteration) == 3


def write_recipe(tmp_path, text):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text, message",
    [
        ("train:\n  meta_bach: 4\n", "unknown key 'train.meta_bach' (did you mean 'train.meta_batch'?)"),
        ("train:\n  meta_batch: many\n", "'train.meta_batch': must be an integer, got 'many'"),
        ("train:\n  meta_batch: 0\n", "'train.meta_batch': must be ≥ 1, got 0"),
        ("mode: magic\n", "'mode': must be one of pcm, quantized, ideal, no-adapt"),
        ("network:\n  tau_mem: -1\n", "'network.tau_mem': must be > 0"),
        ("task:\n  amplitude: [5, 1]\n", "'task.amplitude': must be [low, high] with low ≤ high"),
        ("network: 3\n", "'network.' must be a mapping"),
        ("device: nowhere.yaml\n", "nowhere.yaml: no such device file"),
        ("train: [\n", "r.yaml:2: not valid YAML"),
    ],
)
def test_bad_recipes_one_line_exit_2(tmp_path, text, message):
    result = runner.invoke(app, ["meta-train", str(write_recipe(tmp_path, text)), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2, result.output
    assert message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_cli_meta_train_json_and_resume(tmp_path):
    import yaml

    recipe = {k: v for k, v in tiny_recipe().items()}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(recipe))
    runs = tmp_path / "runs"
    result = runner.invoke(app, ["meta-train", str(path), "--runs-dir", str(runs), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{") :])
    assert report["mse_zero"] > 0 and report["n_tasks"] == 20
    run_dir = runs / (runs / "LATEST").read_text().strip()
    before = {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir()}
    result = runner.invoke(app, ["meta-train", "--resume", "--runs-dir", str(runs)])
    assert result.exit_code == 0 and "already finished" in result.output, result.output
    assert {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir()} == before  # nothing rewritten
    (run_dir / "evaluation.json").unlink()  # stopped during the final evaluation: --resume evaluates
    result = runner.invoke(app, ["meta-train", "--resume", "--runs-dir", str(runs)])
    assert result.exit_code == 0 and (run_dir / "evaluation.json").is_file(), result.output
    result = runner.invoke(app, ["meta-train", "--resume", "--runs-dir", str(tmp_path / "none")])
    assert result.exit_code == 2 and "run `pcmmeta meta-train" in result.output


SHARDING_SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
import jax
from tiny import tiny_recipe
from pcmmeta.experiment.train import build_experiment, init_state, make_optimizer, make_train_step
recipe = tiny_recipe()
exp = build_experiment(recipe)
opt = make_optimizer(exp.train)
state = init_state(exp, opt)
step = make_train_step(exp, opt, 8)
losses = []
for _ in range(3):
    state, loss, _ = step(state, exp.family)
    losses.append(float(loss))
print(json.dumps({{"devices": len(jax.devices()), "losses": losses,
                   "g_out": state.network.layers["out"].ravel().tolist()}}))
"""


@pytest.mark.slow
def test_sharded_equals_unsharded():
    outs = []
    for count in (1, 2):
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={count}", JAX_PLATFORMS="cpu")
        script = SHARDING_SCRIPT.format(tests=str(Path(__file__).parent))
        proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        outs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert [o["devices"] for o in outs] == [1, 2]
    np.testing.assert_allclose(outs[0]["losses"], outs[1]["losses"], rtol=1e-4)
    np.testing.assert_allclose(outs[0]["g_out"], outs[1]["g_out"], rtol=1e-4, atol=1e-5)


def test_docs_list_every_recipe_key():
    from pcmmeta.experiment.recipe import all_keys

    text = (Path(__file__).parent.parent / "docs" / "recipes.md").read_text()
    missing = [k for k in all_keys() if f"`{k}`" not in text]
    assert not missing


def test_resume_skips_a_cut_off_metrics_line(tmp_path):
    run = start_run(tiny_recipe(), tmp_path)

    def stop_after_two(it, loss, record):
        if it == 2:
            raise KeyboardInterrupt

    train(tiny_recipe(), run, on_iteration=stop_after_two, evaluate_at_end=False)
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write('{"iteration": 3, "lo')  # a process killed mid-write
    resumed = train(tiny_recipe(), run, resume=True, evaluate_at_end=False).state
    assert int(resumed.iteration) == 6
    iterations = [json.loads(l)["iteration"] for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert iterations == [1, 2, 3, 4, 5, 6]
    # damage that is not a cut-off last line: refused by `meta-train --resume`, naming the line
    good = (run / "metrics.jsonl").read_bytes()
    lines = good.decode().splitlines()
    for damaged, message in [
        ("\n".join(lines[:2] + ["garbage"] + lines[2:]) + "\n", "metrics.jsonl:3: not a metrics record"),
        (None, "metrics.jsonl: not UTF-8 text at byte"),
    ]:
        (run / "metrics.jsonl").write_bytes(damaged.encode() if damaged else good[:20] + b"\xff\xfe" + good[20:])
        result = runner.invoke(app, ["meta-train", "--resume", "--run", str(run)])
        assert result.exit_code == 2 and message in result.output, result.output
    (run / "metrics.jsonl").write_bytes(good)
    (run / "checkpoint.eqx").unlink()
    result = runner.invoke(app, ["meta-train", "--resume", "--run", str(run)])
    assert result.exit_code == 2 and "no checkpoint.eqx (deleted?): nothing to resume" in result.output
    assert (run / "metrics.jsonl").read_bytes() == good  # nothing rewritten


@pytest.mark.slow
def test_only_process_0_writes_the_run_directory(tmp_path, monkeypatch):
    """With several hosts every process runs `start_run` and `train`; a process other than 0
    must write nothing: no run directory, checkpoint, metrics, evaluation or LATEST."""
    import pcmmeta.experiment.train as train_module

    monkeypatch.setattr(train_module, "is_writer", lambda: False)
    recipe = tiny_recipe(train__iterations=2, train__checkpoint_every=1, eval__tasks=2, eval__plot_tasks=0)
    run = start_run(recipe, tmp_path / "runs")
    outcome = train(recipe, run, on_checkpoint=None)
    assert int(outcome.state.iteration) == 2 and outcome.evaluation is not None  # it did the work…
    assert list(tmp_path.iterdir()) == []  # …and wrote nothing


def test_tasks_per_chip_trains_and_is_checked_against_the_meta_batch():
    recipe = tiny_recipe(maml__tasks_per_chip=2)
    exp = build_experiment(recipe)
    opt = make_optimizer(exp.train)
    state = init_state(exp, opt)
    step = make_train_step(exp, opt, exp.train.meta_batch)
    state, loss, _ = step(state, exp.family)
    assert np.isfinite(float(loss)) and int(state.iteration) == 1
    with pytest.raises(UserInputError, match=r"'maml.tasks_per_chip' \(3\) must divide 'train.meta_batch' \(8\)"):
        tiny_recipe(maml__tasks_per_chip=3)


@pytest.mark.parametrize(
    "meta_batch, chunk_tasks, per_chip, n_devices, expected",
    [
        (8, 4, 1, 1, (4, False)),
        (8, 5, 1, 1, (4, False)),  # the largest divisor of 8 that is ≤ 5
        (12, 5, 3, 1, (3, False)),  # whole chips of 3
        (32, 5, 16, 1, (16, False)),  # one chip is more than the limit: one chip per chunk
        (8, 4, 1, 2, (4, True)),  # split over 2 devices
        (6, 16, 1, 4, (6, False)),  # 6 tasks do not split evenly over 4 devices
        (12, 16, 2, 4, (12, False)),  # 6 chips do not split evenly over 4 devices
        (90, 16, 3, 2, (6, True)),  # one chip of 3 on each of 2 devices; 12 does not divide 90
        (256, 64, 2, 4, (64, True)),
    ],
)
def test_chunk_sizes_worked_out_by_hand(meta_batch, chunk_tasks, per_chip, n_devices, expected):
    assert chunk_size(meta_batch, chunk_tasks, per_chip, n_devices) == expected


def test_chunks_hold_whole_chips_and_divide_the_meta_batch():
    for meta_batch, chunk_tasks, per_chip, n_devices in itertools.product(
        [1, 6, 8, 12, 32, 90, 256], [1, 5, 16, 64], [1, 2, 3, 16], [1, 2, 4]
    ):
        if meta_batch % per_chip:
            with pytest.raises(ValueError, match="must divide the meta-batch"):
                chunk_size(meta_batch, chunk_tasks, per_chip, n_devices)
            continue
        chunk, sharded = chunk_size(meta_batch, chunk_tasks, per_chip, n_devices)
        unit = per_chip * (n_devices if sharded else 1)
        assert meta_batch % chunk == 0 and chunk % unit == 0
        assert chunk <= max(chunk_tasks, unit)
        # the largest such chunk: the next multiple of the unit that divides would exceed the limit
        bigger = [c for c in range(chunk + unit, meta_batch + 1, unit) if meta_batch % c == 0]
        assert not bigger or bigger[0] > max(chunk_tasks, unit)


def test_accumulated_gradient_does_not_depend_on_the_chunk_size():
    """The meta-gradient summed over chunks of 2, 4 or 8 tasks is the same gradient, up to float
    rounding: one step moves every parameter alike. In software (`mode: ideal`): on the chip
    each chunk draws its own device noise (a key per chunk), so the chunk size picks which
    noise sample the gradient sees."""
    after = {}
    for chunk in (8, 4, 2):
        exp = build_experiment(tiny_recipe(mode="ideal", train__chunk_tasks=chunk))
        opt = make_optimizer(exp.train)
        state = init_state(exp, opt)
        before = state.network
        state, loss, _ = make_train_step(exp, opt, exp.train.meta_batch)(state, exp.family)
        after[chunk] = (float(loss), jax.tree.leaves(eqx.filter(state.network, eqx.is_inexact_array)))
    loss8, leaves8 = after[8]
    moved = [
        np.abs(np.asarray(a) - np.asarray(b)).max()
        for a, b in zip(leaves8, jax.tree.leaves(eqx.filter(before, eqx.is_inexact_array)))
    ]
    assert max(moved) > 1e-3  # the step changed the network: there is a gradient to compare
    for chunk in (4, 2):
        loss, leaves = after[chunk]
        assert loss == pytest.approx(loss8, rel=1e-5), chunk
        for a, b in zip(leaves, leaves8):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5, err_msg=f"chunk {chunk}")


def test_docs_key_table_is_the_generated_one():
    """docs/recipes.md's key table is `keys_table()` verbatim: every key's default and help come
    from its one declaration."""
    from pcmmeta.experiment.recipe import keys_table

    text = (Path(__file__).parent.parent / "docs" / "recipes.md").read_text()
    assert keys_table() in text
