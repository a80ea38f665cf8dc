import csv
import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml
from tiny import assert_png_drawn, tiny_recipe
from typer.testing import CliRunner

from pcmmeta.cli.app import app
from pcmmeta.core.programming import WriteVerify
from pcmmeta.experiment.chip import (
    CONDITIONS,
    deploy,
    drift_table,
    load_array,
    probe_response,
    read_weights,
    response_ratio,
)
from pcmmeta.experiment.train import load_run

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """A tiny run trained briefly, deployed by write-verify through the CLI."""
    root = tmp_path_factory.mktemp("chip")
    recipe = tiny_recipe(
        train__iterations=100,
        train__meta_batch=16,
        train__checkpoint_every=100,
        train__learning_rate=0.1,
        network__hidden=[16, 16],
        network__time_steps=20,
        eval__tasks=20,
    )
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(recipe))
    runs = root / "runs"
    assert invoke("meta-train", path, "--runs-dir", runs).exit_code == 0
    result = invoke("deploy", "--runs-dir", runs, "--json", "--plot", root / "deploy.png")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    run_dir = runs / (runs / "LATEST").read_text().strip()
    return root, runs, run_dir, report


def test_deploy_reports_and_saves(deployed):
    root, runs, run_dir, report = deployed
    assert report["n_devices"] == 2 * (2 * 16 + 16 * 16 + 16)
    assert report["fraction_within_tolerance"] > 0.7 and report["pulses_max"] <= 100
    # the report is programming.compare.figures_of plus deploy's own figures; per-layer RMS pools to the total
    from pcmmeta.core.programming.compare import MethodFigures

    assert {f.name for f in dataclasses.fields(MethodFigures)} <= set(report)
    layers = report["layers"].values()
    pooled = np.sqrt(sum(v["devices"] * v["rms_error_uS"] ** 2 for v in layers) / sum(v["devices"] for v in layers))
    assert pooled == pytest.approx(report["rms_error_uS"], rel=1e-6)
    assert report["time_us_mean"] == pytest.approx(
        1e6
        * (
            report["cost"]["set_s"] * report["set_pulses_mean"]
            + report["cost"]["reset_s"] * (report["resets_mean"] + 1)
            + report["cost"]["read_s"] * report["verify_reads_mean"]
        ),
        rel=1e-6,
    )
    assert (run_dir / "deployed.eqx").is_file() and (run_dir / "deploy.json").is_file()
    assert_png_drawn(root / "deploy.png")


def test_adapt_changes_only_output_devices_and_only_by_set_pulses(deployed):
    root, runs, run_dir, _ = deployed
    result = invoke(
        "adapt",
        "--runs-dir",
        runs,
        "--pulses",
        2,
        "--at-hours",
        2,
        "--task-seed",
        3,
        "--json",
        "--plot",
        root / "adapt.png",
    )
    assert result.exit_code == 0, result.output
    assert_png_drawn(root / "adapt.png")
    report = json.loads(result.stdout)  # the notes below go to stderr, the JSON stays whole
    assert "warning: --steps 2: the recipe's blind-pulse was meta-trained for 1 step" in result.stderr
    assert f"plot: {root / 'adapt.png'}" in result.stderr
    exp, state = load_run(run_dir)
    before = load_array(run_dir / "deployed.eqx", state.network)
    after = load_array(run_dir / report["adapted_array"].split("/")[-1], state.network)
    for layer in ("in", "hidden"):
        for a, b in zip(jax.tree.leaves(before.layers[layer]), jax.tree.leaves(after.layers[layer])):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    dn = np.asarray(after.layers["out"].n_set) - np.asarray(before.layers["out"].n_set)
    assert dn.min() >= 0 and dn.max() <= 2  # SET pulses only: counts since RESET only grow
    assert int(dn.sum()) == report["total_pulses"] > 0
    assert report["devices_pulsed"] == int((dn > 0).sum())
    assert report["energy_pJ"] == pytest.approx(10.0 * report["total_pulses"])
    changed = dn > 0
    np.testing.assert_array_equal(
        np.asarray(after.layers["out"].g_prog)[~changed], np.asarray(before.layers["out"].g_prog)[~changed]
    )
    assert (run_dir / "deployed.eqx").is_file()
    again = invoke("adapt", "--runs-dir", runs, "--pulses", 2, "--at-hours", 2, "--task-seed", 3, "--json")
    assert json.loads(again.stdout)["after"] == report["after"]  # same seed, same numbers
    assert report["set_name"] == "query" and len(report["per_step"]) == 3
    assert json.loads(again.stdout)["adapted_array"] != report["adapted_array"]  # nothing overwritten


def test_adapt_with_user_support_csv(deployed, tmp_path):
    _, runs, _, _ = deployed
    csv = tmp_path / "support.csv"
    csv.write_text("x,y\n" + "".join(f"{x},{np.sin(x):.4f}\n" for x in np.linspace(-4, 4, 9)))
    result = invoke("adapt", "--runs-dir", runs, "--support", csv, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["set_name"] == "support" and report["shots"] == 9 and "mse" in report["after"]
    # a warning exactly when the update made the user's support set worse
    assert ("warning: adaptation made the support mse worse" in result.stderr) == (
        report["after"]["mse"] > report["before"]["mse"]
    )
    bad = tmp_path / "bad.csv"
    bad.write_text("x,y\n1,2\n3,oops\n")
    result = invoke("adapt", "--runs-dir", runs, "--support", bad)
    assert result.exit_code == 2 and "bad.csv:3: column 'y' is not a number" in result.output
    result = invoke("adapt", "--runs-dir", runs, "--support", tmp_path)  # a folder: the image families' kind
    assert result.exit_code == 2 and "is a folder; a sinusoid support set is a CSV with columns x,y" in result.output


def test_drift_hurts_and_compensation_restores_the_weight_scale(deployed, tmp_path):
    _, runs, run_dir, _ = deployed
    out = tmp_path / "drift.csv"
    result = invoke("drift-eval", "--runs-dir", runs, "--hours", "720,1", "--tasks", 60, "--json", "--csv", out)
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    rows = body["results"]
    # the zero predictor on the very tasks of the table: the reference every condition is read against
    from pcmmeta.experiment.chip import drift_tasks

    exp, _ = load_run(run_dir)
    zero = float(np.mean(np.asarray(drift_tasks(exp, 60, 0).y_query) ** 2))
    assert body["baselines"] == {"mse_zero": pytest.approx(zero, rel=1e-6)}
    # --csv holds the JSON's rows: the same columns, floats written exactly
    with open(out, newline="") as f:
        read = list(csv.DictReader(f))
    assert len(read) == len(rows) == 2 * 4  # two times × four conditions (chip.CONDITIONS)
    assert list(read[0]) == list(rows[0])
    for got, want in zip(read, rows):
        for key, value in want.items():
            assert (float(got[key]) == value) if isinstance(value, float) else (got[key] == str(value)), key
    mse = {(r["hours"], r["condition"]): r["mse"] for r in rows}
    assert [r["hours"] for r in rows][0] == 1  # sorted
    assert mse[(720, "deployed")] > mse[(1, "deployed")]
    exp, state = load_run(run_dir)
    array = load_array(run_dir / "deployed.eqx", state.network)
    t = 720 * 3600.0
    net, names = state.network, state.network.layer_names
    drifted = read_weights(jax.random.key(0), array, t, net, exp.meta.device)
    ratio = np.array([float(response_ratio(probe_response(drifted, names), array.reference)[n]) for n in names])
    assert np.all(ratio < 0.95)  # drift shrinks every layer
    # α from one read at 720 h, applied to another read at the same time; one noisy read sets α
    # (on the 2 × 16 input layer that alone is a ~10% spread), so the error is averaged over
    # eight independent pairs of reads
    errors = []
    for i in range(8):
        first, second = (read_weights(jax.random.key(10 + 2 * i + j), array, t, net, exp.meta.device) for j in (0, 1))
        now = response_ratio(probe_response(first, names), array.reference)
        restored_w = {n: second[n] / now[n] for n in names}
        errors.append(
            [abs(float(response_ratio(probe_response(restored_w, names), array.reference)[n]) - 1) for n in names]
        )
    mean_error = np.mean(errors, axis=0)
    assert np.all(mean_error < 0.1) and np.all(mean_error < np.abs(ratio - 1))
    again = invoke("drift-eval", "--runs-dir", runs, "--hours", "720,1", "--tasks", 60, "--json")
    assert json.loads(again.stdout)["results"] == rows  # same seed, same numbers


def test_a_single_output_layers_scale_is_measured_even_where_one_probe_cancels():
    """The sinusoid's readout is one column of weights: one ±1 probe's response p·w is one sum,
    which can cancel to zero. Here w is made orthogonal to the first probe; the bank of probes
    still measures a 10 % smaller copy as 0.9 and a slightly noisy read as ≈ 1."""
    from pcmmeta.experiment.chip import PROBES, probe_bank

    names = ("out",)
    bank = np.asarray(probe_bank(0, 40))  # the probes of the first layer named
    v = np.asarray(jax.random.normal(jax.random.key(3), (40,)))
    w = jnp.asarray(v - (bank[0] @ v) / 40 * bank[0], jnp.float32)
    reference = probe_response({"out": w}, names)
    assert reference["out"].shape == (PROBES,)
    assert float(reference["out"][0]) < 1e-5  # what the first probe alone would have seen
    assert float(response_ratio(probe_response({"out": 0.9 * w}, names), reference)["out"]) == pytest.approx(
        0.9, rel=1e-5
    )
    noisy = w + 0.02 * np.std(v) * jax.random.normal(jax.random.key(4), (40,))
    assert float(response_ratio(probe_response({"out": noisy}, names), reference)["out"]) == pytest.approx(
        1.0, abs=0.05
    )


def test_a_deployed_array_of_the_older_format_is_refused_with_a_remedy(deployed, tmp_path):
    """Older versions kept one probe's response per layer (a scalar): such a file must not load
    and silently mis-scale the compensation."""
    import equinox as eqx

    from pcmmeta.errors import UserInputError
    from pcmmeta.experiment.chip import DeployedArray

    _, _, run_dir, _ = deployed
    exp, state = load_run(run_dir)
    array = load_array(run_dir / "deployed.eqx", state.network)
    old = DeployedArray(array.layers, {n: jnp.mean(r) for n, r in array.reference.items()})
    path = tmp_path / "deployed.eqx"
    eqx.tree_serialise_leaves(path, old)
    with pytest.raises(UserInputError, match="does not match this run's deployed array.*deploy again"):
        load_array(path, state.network)


def test_compensation_undoes_uniform_drift_exactly_on_a_noiseless_device(deployed):
    """No read noise and one ν for every device: every weight drifts by f = (t/t0)^−ν, so the
    compensation factor is 1/f in closed form and the compensated chip scores the same at any
    time, while the uncompensated one gets worse."""
    import equinox as eqx

    from pcmmeta.experiment.chip import DeployedArray, run_on_chip

    _, _, run_dir, _ = deployed
    exp, state = load_run(run_dir)
    net, names = state.network, state.network.layer_names
    device = dataclasses.replace(exp.meta.device, read_std_slope=0.0, read_std_intercept=0.0, drift_nu_std=0.0)
    meta = eqx.tree_at(lambda m: m.device, exp.meta, device)
    layers = {n: device.programmed_state(jax.random.key(0), net.layers[n], 0.0) for n in names}
    unreferenced = DeployedArray(layers, {n: jnp.ones(()) for n in names})
    array = DeployedArray(
        layers, probe_response(read_weights(jax.random.key(1), unreferenced, 0.0, net, device), names)
    )
    for hours in (24, 720):
        t = hours * 3600.0
        now = probe_response(read_weights(jax.random.key(2), array, t, net, device), names)
        alpha = np.array([1 / float(response_ratio(now, array.reference)[n]) for n in names])
        np.testing.assert_allclose(alpha, (t / device.drift_t0) ** device.drift_nu_mean, rtol=1e-4)
    tasks = exp.eval_family.sample(jax.random.key(3), 40)
    mse = {}
    for hours in (24, 720):
        for compensate in (False, True):
            result, _ = run_on_chip(
                jax.random.key(4), array, tasks, exp.eval_family, net, meta, hours * 3600.0, False, 1, compensate
            )
            mse[hours, compensate] = float(np.asarray(result.metrics["mse"][:, -1]).mean())
    assert mse[720, True] == pytest.approx(mse[24, True], rel=1e-3)
    assert abs(mse[720, False] - mse[24, False]) > 10 * abs(mse[720, True] - mse[24, True]), (
        mse
    )  # drift alone does change it


def test_without_drift_or_read_noise_mse_is_the_same_at_every_hour(deployed):
    _, _, run_dir, _ = deployed
    exp, state = load_run(run_dir)
    still = dataclasses.replace(
        exp.meta.device, drift_nu_mean=0.0, drift_nu_std=0.0, read_std_slope=0.0, read_std_intercept=0.0
    )
    exp = dataclasses.replace(exp, meta=dataclasses.replace(exp.meta, device=still))
    array, _, _ = deploy(jax.random.key(0), state.network, still, WriteVerify())
    rows = drift_table(exp, state.network, array, [1.0, 24.0, 720.0], 30, 1, 0, CONDITIONS[:2])
    for condition in ("deployed", "adapted"):
        values = [r["mse"] for r in rows if r["condition"] == condition]
        assert values[0] == pytest.approx(values[1], rel=1e-6) and values[0] == pytest.approx(values[2], rel=1e-6)


@pytest.mark.parametrize(
    "args, message",
    [
        (["drift-eval", "--hours", ""], "--hours: give at least one time"),
        (["drift-eval", "--hours", "1,abc"], "--hours: not a number: 'abc'"),
        (["drift-eval", "--hours", "1,-5"], "--hours: times must be > 0 and ≤ 1e+07 h, got -5"),
        (
            ["deploy", "--method", "magic"],
            "--method: must be write-verify, write-verify-set-on-flat, write-verify-burst, single-shot, learned, network-aware",
        ),
        (["deploy", "--budget", "0.5"], "--budget: only used with --method network-aware or --compare"),
        (["deploy", "--seeds", "2"], "--seeds: only used with --compare"),
        (["deploy", "--tasks", "20"], "--tasks: only used with --compare"),
        (["deploy", "--hours", "1"], "--hours: only used with --compare"),
    ],
)
def test_bad_chip_arguments(deployed, args, message):
    _, runs, _, _ = deployed
    result = invoke(*args, "--runs-dir", runs)
    assert result.exit_code == 2 and message in result.output, result.output


@pytest.mark.parametrize("command", [["deploy"], ["adapt"], ["drift-eval"]])
def test_no_run_says_what_to_run_first(tmp_path, command):
    result = invoke(*command, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2
    assert "run `pcmmeta meta-train recipes/sine-quick.yaml` first" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_not_deployed_says_to_deploy_first(deployed, tmp_path):
    import shutil

    _, _, run_dir, _ = deployed  # the trained run without its deployed array (no training of its own)
    copy = shutil.copytree(run_dir, tmp_path / run_dir.name, ignore=shutil.ignore_patterns("deployed.eqx", "adapted-*"))
    for command in (["adapt"], ["drift-eval"]):
        result = invoke(*command, "--run", copy)
        assert result.exit_code == 2 and "run `pcmmeta deploy --run" in result.output and "import-chip" in result.output


def test_learned_programming_through_the_cli(deployed):
    """learn-programming, deploy --compare and deploy --method learned on the trained run.
    (Last in this module: it redeploys the run with the learned method.)"""
    root, runs, run_dir, _ = deployed
    policy = root / "p.policy"
    result = invoke("learn-programming", "--iterations", 1, "--out", policy, "--targets", run_dir, "--json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert policy.is_file() and body["info"]["targets"] == f"run {run_dir.name}"
    assert [f["method"] for f in body["held_out"]] == ["write-verify", "learned"]

    before = (run_dir / "deployed.eqx").read_bytes()
    result = invoke(
        "deploy",
        "--runs-dir",
        runs,
        "--compare",
        "--policy",
        policy,
        "--tasks",
        6,
        "--seeds",
        2,
        "--json",
        "--plot",
        root / "cmp.png",
    )
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    methods = body["methods"]
    assert [m["method"] for m in methods] == [
        "write-verify",
        "write-verify-set-on-flat",
        "write-verify-burst",
        "single-shot",
        "learned",
        "network-aware",
    ]
    assert body["seeds"] == [0, 1] and body["split"] == "test" and body["metric"] == "mse"
    assert len({m["n_devices"] for m in methods}) == 1
    by = {m["method"]: m for m in methods}
    assert by["single-shot"]["verify_reads_mean"] == 0 and by["write-verify"]["verify_reads_mean"] >= 1
    for m in methods:  # the contract scripts read: times and the held-out metric per condition and time
        assert 0 < m["chip_time_s"] < m["programming_time_s"]
        assert len(m["programming_time_s_per_seed"]) == 2
        for condition in ("deployed", "adapted"):
            for hours in ("1", "720"):
                point = m["metric"][condition][hours]
                assert point["mean"] > 0 and point["sem"] >= 0
    # the network-aware method keeps its budget: a tenth of plain write-verify's expected time
    assert by["network-aware"]["programming_time_s"] <= body["plan"]["budget_s"] + 1e-12
    assert by["network-aware"]["programming_time_s"] < 0.2 * by["write-verify"]["programming_time_s"]
    assert (run_dir / "deployed.eqx").read_bytes() == before  # --compare writes no array
    from PIL import Image

    with Image.open(root / "cmp.png") as image:
        assert image.size[0] > 800 and np.unique(np.asarray(image.convert("L"))).size > 10

    for args, message in (
        (["--tolerance", 0.3], "trained for --tolerance 0.5 --max-pulses 100"),
        (["--method", "write-verify"], "--policy: only used with --method learned or --compare"),
    ):
        result = invoke("deploy", "--runs-dir", runs, "--method", "learned", "--policy", policy, *args)
        assert result.exit_code == 2 and message in result.output, result.output
    result = invoke("deploy", "--runs-dir", runs, "--method", "learned", "--policy", policy, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["method"] == "learned" and report["pulses_max"] <= 100 and report["verify_reads_mean"] >= 1
    assert (run_dir / "deployed.eqx").read_bytes() != before
    result = invoke(
        "deploy",
        "--runs-dir",
        runs,
        "--method",
        "learned",
        "--policy",
        policy,
        "--tolerance",
        0.3,
        "--force-policy",
        "--json",
    )
    assert result.exit_code == 0 and json.loads(result.stdout)["tolerance_uS"] == 0.3


def test_a_folder_where_the_deployed_array_belongs_is_named_before_any_work(deployed, tmp_path, monkeypatch):
    import shutil

    _, _, run_dir, _ = deployed
    copy = shutil.copytree(run_dir, tmp_path / run_dir.name)
    (copy / "deployed.eqx").unlink()
    (copy / "deployed.eqx").mkdir()
    result = invoke("deploy", "--run", copy)
    assert result.exit_code == 2 and "deployed.eqx: is a folder where the deployed array belongs" in result.output
    # before a learned policy is trained and cached (minutes): no policy in an empty cache
    monkeypatch.setenv("PCMMETA_CACHE", str(tmp_path / "cache"))
    result = invoke("deploy", "--run", copy, "--method", "learned")
    assert result.exit_code == 2 and "deployed.eqx: is a folder where the deployed array belongs" in result.output
    assert not any(p.is_file() for p in (tmp_path / "cache").rglob("*")) and "programming policy" not in result.output
    for command in (["adapt"], ["drift-eval", "--tasks", 2]):  # named as damage, not "not deployed yet"
        result = invoke(*command, "--run", copy)
        assert result.exit_code == 2 and "deployed.eqx: is a folder or a broken link" in result.output, result.output
    assert (
        not (copy / "deploy.json").exists()
        or (copy / "deploy.json").read_bytes() == (run_dir / "deploy.json").read_bytes()
    )


def test_network_aware_deploy_keeps_its_budget_and_refuses_one_below_blind_programming(deployed, tmp_path):
    import shutil

    _, _, run_dir, _ = deployed
    copy = shutil.copytree(run_dir, tmp_path / run_dir.name)  # the module's run keeps its array
    result = invoke("deploy", "--run", copy, "--method", "network-aware", "--budget", 0.2, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    plan = report["plan"]
    assert report["method"] == "network-aware" and plan["budget_fraction"] == 0.2
    assert plan["blind_s"] <= report["programming_time_s"] <= plan["budget_s"]
    assert plan["budget_s"] == pytest.approx(0.2 * plan["write_verify_expected_s"])
    assert 0 < report["verify_reads_mean"] < 1  # some devices verified, most blind
    assert json.loads((copy / "deploy.json").read_text())["plan"] == plan
    result = invoke("deploy", "--run", copy, "--method", "network-aware", "--budget", 0.001)
    assert result.exit_code == 2
    assert "--budget 0.001" in result.output and "does not cover programming every device blind" in result.output
