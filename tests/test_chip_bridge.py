"""A lab's chip in the loop through the exchange files (docs/chip-bridge.md): the readers'
refusals, and the round trip export → import-chip → drift-eval → adapt --plan → the lab applies
the pulses → import-chip --adapted-for with a mock lab that knows only the documented format
(`mock_lab.py`). The image and arm systems run the same round trip in their own test modules."""

import copy
import csv
import json
import shutil

import numpy as np
import pytest
import yaml
from mock_lab import MockLab, weights_of
from tiny import tiny_recipe
from typer.testing import CliRunner

from pcmmeta.cli.app import app
from pcmmeta.errors import UserInputError
from pcmmeta.experiment.chip_bridge import plan_adaptation
from pcmmeta.experiment.recipe import validate
from pcmmeta.experiment.train import build_experiment, load_run
from pcmmeta.io import chip_exchange as X

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def ok(*args):
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    return result


# ------------------------------------------------------------------------------ the readers
LAYERS = [X.CrossbarLayer("a", 2, 3, "body", 1.0, (2, 3)), X.CrossbarLayer("h", 3, 1, "head", 2.0, (3,))]


def every_device(value="5.0"):
    lines = ["layer,row,col,sign,g_uS"]
    for layer in LAYERS:
        for r in range(layer.rows):
            for c in range(layer.cols):
                for s in "+-":
                    lines.append(f"{layer.name},{r},{c},{s},{value}")
    return lines


def test_a_complete_measurement_is_read_into_each_layers_pairs(tmp_path):
    lines = ["layer,row,col,sign,g_uS,t_s"] + [f"{line},{i}" for i, line in enumerate(every_device()[1:])]
    lines[3] = "a,0,1,+,7.25,60"  # G⁺ of row 0, col 1
    path = tmp_path / "m.csv"
    path.write_text("\n".join(lines) + "\n")
    table = X.read_device_values(path, LAYERS, "g_uS", optional_time=True)
    assert table.values["a"].shape == (2, 2, 3) and table.values["h"].shape == (2, 3, 1)
    assert table.values["a"][0, 0, 1] == 7.25 and table.times["a"][0, 0, 1] == 60
    assert (np.delete(table.values["a"].ravel(), 1) == 5.0).all()


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda ls: ls[:-1], "m.csv: no line for device h row 2 col 0 sign -"),
        (lambda ls: ls + [ls[1]], "m.csv:20: device a row 0 col 0 sign + appears again (first on line 2)"),
        (lambda ls: ls[:1] + ["b,0,0,+,5"] + ls[1:], "m.csv:2: unknown layer 'b'; the layers are a, h"),
        (lambda ls: ls[:1] + ["a,2,0,+,5"] + ls[2:], "m.csv:2: row 2 out of range (the layer has 2)"),
        (lambda ls: ls[:1] + ["a,0,-1,+,5"] + ls[2:], "m.csv:2: column 'col' must be a whole number ≥ 0"),
        (lambda ls: ls[:1] + ["a,0,0,*,5"] + ls[2:], "m.csv:2: sign must be '+' or '-'"),
        (lambda ls: ls[:1] + ["a,0,0,+,nan"] + ls[2:], "m.csv:2: column 'g_uS' must be finite"),
        (lambda ls: ls[:1] + ["a,0,0,+,-0.5"] + ls[2:], "m.csv:2: g_uS must be ≥ 0"),
        (lambda ls: ["layer,row,col,sign,target_uS"] + ls[1:], "m.csv:1: header 'layer,row,col,sign,target_uS'"),
        (lambda ls: [ls[0] + ",t_s"] + [line + ",-1" for line in ls[1:]], "m.csv:2: t_s must be ≥ 0"),
        (lambda ls: ls[:1] + ["a,0,0,+,5,6"] + ls[2:], "m.csv:2: 6 fields, the header has 5"),
        (lambda ls: [], "m.csv: empty file"),
    ],
)
def test_a_bad_measurement_is_refused_naming_file_and_line(tmp_path, edit, message):
    path = tmp_path / "m.csv"
    path.write_text("\n".join(edit(every_device())) + "\n")
    with pytest.raises(UserInputError) as err:
        X.read_device_values(path, LAYERS, "g_uS", optional_time=True)
    assert str(err.value).startswith(str(tmp_path / message.split(":", 1)[0]) + message[len(message.split(":", 1)[0]) :]), str(err.value)


def test_a_plan_holds_whole_pulses_on_head_devices_only(tmp_path):
    path = tmp_path / "p.csv"
    X.write_plan(path, LAYERS, {"h": np.array([[0, 2, 0], [1, 0, 0]])})
    assert path.read_text().splitlines() == ["layer,row,col,sign,pulses", "h,0,0,-,1", "h,1,0,+,2"]
    table = X.read_device_values(path, LAYERS, "pulses", only=["h"], every_device=False, integer_values=True)
    assert table.values["h"][0, 1, 0] == 2 and np.isnan(table.values["h"][0, 0, 0])
    for line, message in [("h,0,0,+,1.5", "whole number"), ("h,0,0,+,0", "whole number"), ("a,0,0,+,1", "not adapted on chip")]:
        path.write_text(f"layer,row,col,sign,pulses\n{line}\n")
        with pytest.raises(UserInputError, match=message):
            X.read_device_values(path, LAYERS, "pulses", only=["h"], every_device=False, integer_values=True)


def test_tiles_cover_every_device_once_with_pairs_on_one_tile():
    layers = [X.CrossbarLayer("c", 37, 4, "body", 1.0, (37, 4)), X.CrossbarLayer("o", 5, 3, "head", 1.0, (5, 3))]
    tiles = X.tiles_of(layers, 16, 4)
    for layer in layers:
        covered = np.zeros((layer.rows, 2 * layer.cols), int)
        for t in (t for t in tiles if t.layer == layer.name):
            covered[t.row0 : t.row0 + t.rows, t.col0 : t.col0 + t.cols] += 1
            assert t.col0 % 2 == 0 and t.rows <= 16 and t.cols <= 4
        assert (covered == 1).all()
    with pytest.raises(UserInputError, match="even"):
        X.parse_tile("16x3")


def test_a_rule_that_write_verifies_cannot_be_planned_as_pulses(tmp_path):
    exp = build_experiment(validate({"inner": {"rule": "reprogram-sgd"}, "network": {"hidden": [4, 4], "time_steps": 5}}))
    with pytest.raises(UserInputError, match="reprogram-sgd re-programs changed pairs by write-verify"):
        plan_adaptation(tmp_path, exp, None, None, tmp_path / "p.csv")
    assert not (tmp_path / "p.csv").exists()


# ------------------------------------------------------------------------------ the round trip
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny sinusoid run whose readout adapts visibly: planned pulses on a readout of scale 2."""
    root = tmp_path_factory.mktemp("bridge")
    recipe = tiny_recipe(
        train__iterations=100,
        train__meta_batch=16,
        train__checkpoint_every=100,
        train__learning_rate=0.1,
        network__hidden=[16, 16],
        network__time_steps=20,
        inner={"rule": "planned-pulse"},
        eval__tasks=20,
    )
    (root / "r.yaml").write_text(yaml.safe_dump(recipe))
    sets = ("--set", "network.scale_out=2.0", "--set", "network.tau_out=0.0025")
    ok("meta-train", root / "r.yaml", "--runs-dir", root / "runs", *sets)
    runs = root / "runs"
    run_dir = runs / (runs / "LATEST").read_text().strip()
    recorded = yaml.safe_load((run_dir / "recipe.yaml").read_text())  # --set is recorded in the run's recipe
    assert (recorded["network"]["scale_out"], recorded["network"]["tau_out"]) == (2.0, 0.0025)
    return run_dir


@pytest.fixture
def run_dir(trained, tmp_path):
    """A copy of the trained run (each test imports its own measurements)."""
    return shutil.copytree(trained, tmp_path / "runs" / trained.name)


def test_export_writes_every_device_with_the_documented_weight_map(run_dir, tmp_path):
    out = tmp_path / "export"
    body = json.loads(ok("export", out, "--run", run_dir, "--tile", "8x4", "--json").stdout)
    manifest = json.loads((out / "manifest.json").read_text())
    exp, state = load_run(run_dir)
    net = state.network
    assert manifest["format"] == "pcmmeta-chip/1" and manifest["run"]["name"] == run_dir.name
    assert [layer["name"] for layer in manifest["layers"]] == ["in", "hidden", "out"]
    assert {layer["name"]: layer["role"] for layer in manifest["layers"]} == {"in": "body", "hidden": "body", "out": "head"}
    assert manifest["devices"] == net.n_devices() == body["devices"]
    with open(out / "targets.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["layer", "row", "col", "sign", "target_uS", "tile", "tile_row", "tile_col"]
    assert len(rows) == net.n_devices() and len({(r["layer"], r["row"], r["col"], r["sign"]) for r in rows}) == len(rows)
    assert max(int(r["tile"]) for r in rows) + 1 == len(manifest["tiles"])
    assert all(int(r["tile_row"]) < 8 and int(r["tile_col"]) < 4 for r in rows)
    # the lab's reading of the weight map gives the simulation's weights
    lab_targets = tmp_path / "as-measured.csv"
    with open(lab_targets, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["layer", "row", "col", "sign", "g_uS"])
        w.writerows([r["layer"], r["row"], r["col"], r["sign"], r["target_uS"]] for r in rows)
    lab_w = weights_of(manifest, lab_targets)
    span = exp.meta.device.g_max - exp.meta.device.g_min
    for name in net.layer_names:
        g = np.asarray(net.layers[name])
        sim = (net.scales[name] * (g[0] - g[1]) / span).reshape(g.shape[1], -1)
        lab = np.array([[lab_w[name][(r, c)] for c in range(sim.shape[1])] for r in range(sim.shape[0])])
        np.testing.assert_allclose(lab, sim, rtol=1e-5, atol=1e-6)


def test_a_mock_lab_closes_the_loop_and_its_pulses_lower_the_query_error(run_dir, tmp_path):
    out = tmp_path / "export"
    ok("export", out, "--run", run_dir)
    lab = MockLab(out)  # its own device: other programming noise, drift and SET law than the run's
    lab.measure(tmp_path / "measured.csv", 60.0)
    body = json.loads(ok("import-chip", tmp_path / "measured.csv", "--run", run_dir, "--json").stdout)
    deploy = json.loads((run_dir / "deploy.json").read_text())
    assert deploy["source"] == "measured" and deploy["measurement"]["devices"] == body["measurement"]["devices"]
    assert deploy["measurement"]["t_s_min"] == 60.0 and 0.2 < body["rms_from_target_uS"] < 1.0  # the lab's 0.4 µS error
    drift = json.loads(ok("drift-eval", "--run", run_dir, "--hours", "1,720", "--tasks", 20, "--json").stdout)
    assert len(drift["results"]) == 8 and all(np.isfinite(r["mse"]) for r in drift["results"])
    simulated = json.loads(ok("adapt", "--run", run_dir, "--task-seed", 0, "--json").stdout)  # adapt works on it too
    assert simulated["total_pulses"] >= 1 and (run_dir / simulated["adapted_array"]).is_file()
    # plan several tasks; the lab applies the plan the model expects most from
    plans = {}
    for seed in range(4):
        plans[seed] = json.loads(
            ok("adapt", "--run", run_dir, "--task-seed", seed, "--plan", tmp_path / f"plan{seed}.csv", "--json").stdout
        )
    seed = min(plans, key=lambda s: plans[s]["query_after_simulated"]["mse"] - plans[s]["query_before"]["mse"])
    plan = plans[seed]
    assert plan["query_after_simulated"]["mse"] < plan["query_before"]["mse"]
    assert plan["support_before"]["mse"] > 0 and plan["devices"] >= 1
    head = {"out"}
    with open(tmp_path / f"plan{seed}.csv", newline="") as f:
        lines = list(csv.DictReader(f))
    assert len(lines) == plan["devices"] and {line["layer"] for line in lines} <= head
    assert sum(int(line["pulses"]) for line in lines) == plan["pulses"]
    adapted_lab = copy.deepcopy(lab)
    adapted_lab.apply_plan(tmp_path / f"plan{seed}.csv", 3600.0)
    adapted_lab.measure(tmp_path / "measured-adapted.csv", 3660.0)
    result = json.loads(
        ok("import-chip", tmp_path / "measured-adapted.csv", "--run", run_dir, "--adapted-for", seed, "--json").stdout
    )
    assert result["source"] == "measured" and result["after"]["mse"] < result["before"]["mse"], result
    assert (run_dir / f"adapted-task{seed}-1h-measured.eqx").is_file()
    # the same pulses on the other device of each pair move the weights the wrong way
    swapped = tmp_path / "swapped.csv"
    swapped.write_text(
        "layer,row,col,sign,pulses\n"
        + "".join(f"{x['layer']},{x['row']},{x['col']},{'-' if x['sign'] == '+' else '+'},{x['pulses']}\n" for x in lines)
    )
    wrong_lab = copy.deepcopy(lab)
    wrong_lab.apply_plan(swapped, 3600.0)
    wrong_lab.measure(tmp_path / "measured-wrong.csv", 3660.0)
    wrong = json.loads(
        ok("import-chip", tmp_path / "measured-wrong.csv", "--run", run_dir, "--adapted-for", seed, "--json").stdout
    )
    assert wrong["after"]["mse"] > result["after"]["mse"]
    # the run's report, the list of runs and the NIR graph see the measured chip
    ok("report", run_dir)
    page = (run_dir / "report.html").read_text()
    assert "Measured on a chip" in page and "adapted-task" in page
    runs = json.loads(ok("runs", "--runs-dir", run_dir.parent, "--json").stdout)["runs"]
    assert [(r["name"], r["deployed"], r["adapted"] >= 2) for r in runs] == [(run_dir.name, "measured", True)]
    ok("export", "--format", "nir", tmp_path / "sine.nir", "--run", run_dir, "--adapted", result["adapted_array"])
    import nir

    graph = nir.read(tmp_path / "sine.nir")
    assert isinstance(graph.nodes["in"], nir.Affine) and graph.nodes["out"].weight.shape == (1, 16)


def test_a_manifest_of_another_run_or_other_conductances_is_refused_and_nothing_written(run_dir, tmp_path):
    out = tmp_path / "export"
    ok("export", out, "--run", run_dir)
    MockLab(out).measure(out / "measured.csv", 0.0, with_time_column=False)
    manifest = json.loads((out / "manifest.json").read_text())
    for edit, message in [
        (lambda m: m["run"].update(name="another-run"), "a manifest of run 'another-run'"),
        (lambda m: m.update(conductances_sha256="0" * 64), "exported from other conductances"),
        (lambda m: m.update(format="pcmmeta-chip/0"), "not a pcmmeta-chip/1 manifest"),
    ]:
        changed = copy.deepcopy(manifest)
        edit(changed)
        (out / "manifest.json").write_text(json.dumps(changed))
        result = invoke("import-chip", out / "measured.csv", "--run", run_dir)
        assert result.exit_code == 2 and message in result.output, result.output
        assert not (run_dir / "deployed.eqx").exists() and not (run_dir / "deploy.json").exists()
    (out / "manifest.json").write_text(json.dumps(manifest))
    result = invoke("import-chip", out / "measured.csv", "--run", run_dir, "--at-seconds", 30)  # the file has no t_s
    assert result.exit_code == 0, result.output
    assert json.loads((run_dir / "deploy.json").read_text())["measurement"]["t_s_min"] == 30.0
    result = invoke("import-chip", out / "measured.csv", "--run", run_dir, "--adapted-for", 5)
    assert result.exit_code == 2 and "no plan plan-task5.json" in result.output
    # a plan for the user's own support set, named after the file
    support = tmp_path / "my-task.csv"
    support.write_text("x,y\n" + "".join(f"{x},{2 * np.sin(x + 1)}\n" for x in np.linspace(-4, 4, 10)))
    ok("adapt", "--run", run_dir, "--support", support, "--plan", tmp_path / "plan.csv")
    assert (run_dir / "plan-support-my-task.json").is_file()
    MockLab(out).measure(tmp_path / "after.csv", 3600.0)
    body = json.loads(ok("import-chip", tmp_path / "after.csv", "--run", run_dir, "--adapted-for", support, "--json").stdout)
    assert body["set_name"] == "support" and (run_dir / "adapted-support-my-task-1h-measured.eqx").is_file()
    # a plan made for another deployed array, or changed since, is refused
    plan_text = (tmp_path / "plan.csv").read_text()
    (tmp_path / "plan.csv").write_text(plan_text + "out,0,0,+,1\n")
    result = invoke("import-chip", tmp_path / "after.csv", "--run", run_dir, "--adapted-for", support)
    assert result.exit_code == 2 and "changed since `adapt --plan` wrote it" in result.output
    (tmp_path / "plan.csv").write_text(plan_text)
    ok("import-chip", out / "measured.csv", "--run", run_dir, "--seed", 1)  # other drift exponents: another array
    result = invoke("import-chip", tmp_path / "after.csv", "--run", run_dir, "--adapted-for", support)
    assert result.exit_code == 2 and "made for another deployed array" in result.output
