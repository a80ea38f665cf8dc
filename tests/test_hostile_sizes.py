"""Hostile sizes and values: every size key of a recipe and every size flag of a command is
checked against the memory it needs (or a bound) before anything is allocated or created, and
every refusal is one line, exit code 2, naming the key or flag. Text values of a recipe and
path flags name themselves when refused; flags that a support file overrides are refused with it."""

import pytest
import refusal
import yaml
from tiny import tiny_recipe
from typer.testing import CliRunner

from pcmmeta.cli.app import app
from pcmmeta.core.fields import Field, check
from pcmmeta.errors import UserInputError
from pcmmeta.experiment.recipe import validate

runner = CliRunner()

#: The small sizes the recipes below start from: a refusal then comes from the one key changed.
SMALL = {
    "name": "hostile",
    "task": {"family": "sinusoid", "shots": 5},
    "network": {"hidden": [8, 8], "time_steps": 10},
    "train": {"iterations": 1, "meta_batch": 2, "chunk_tasks": 2},
    "eval": {"tasks": 2, "plot_tasks": 0},
}


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def with_key(dotted: str, value) -> dict:
    recipe = yaml.safe_load(yaml.safe_dump(SMALL))
    section, key = dotted.split(".")
    recipe[section][key] = value
    return recipe


def refused(folder, monkeypatch, capsys, *argv) -> str:
    """The CLI's refusal (`refusal.refused`), its one line starting with "error: "."""
    line = refusal.refused(folder, monkeypatch, capsys, *argv)
    assert line.startswith("error: "), line
    return line


# ------------------------------------------------------------- meta-train: every size key
@pytest.mark.parametrize(
    "dotted, value, limit",
    [
        ("train.meta_batch", 10**9, None),  # was a ValueError from pcmmeta.core.noise
        ("eval.tasks", 10**9, None),  # was a ValueError after training, in the run directory
        ("eval.tasks", 100_000, "2G"),  # the held-out set was not in the estimate: training started
        ("task.shots", 1_000_000, "2G"),  # the dominant part was named, not the key
        ("network.hidden", [100_000, 100_000], None),
    ],
)
def test_a_size_key_too_large_is_refused_naming_it_before_the_run_directory(tmp_path, monkeypatch, capsys, dotted, value, limit):
    if limit is None:
        monkeypatch.delenv("PCMMETA_MEMORY_LIMIT", raising=False)
    else:
        monkeypatch.setenv("PCMMETA_MEMORY_LIMIT", limit)
    recipe = with_key(dotted, value)
    if dotted == "eval.tasks" and limit:
        recipe["task"]["shots"] = 5_000  # held-out data: 10⁵ tasks × 2·5000 points × (x, y) floats ≈ 8 GB
    path = tmp_path / "hostile.yaml"
    path.write_text(yaml.safe_dump(recipe))
    runs = tmp_path / "runs"
    line = refused(tmp_path, monkeypatch, capsys, "meta-train", path, "--runs-dir", runs)
    assert f"'{dotted}'" in line, line
    assert str(path) in line
    assert not runs.exists()


def test_the_built_in_glyphs_are_checked_before_they_are_generated(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("PCMMETA_MEMORY_LIMIT", raising=False)
    path = tmp_path / "glyphs.yaml"
    # 10⁷ classes × 20 drawings: NumPy's MemoryError in the generator before the memory check
    path.write_text(yaml.safe_dump({
        "name": "glyphs", "task": {"family": "images", "glyph_classes": 10**7},
        "network": {"kind": "cnn", "channels": 4}, "train": {"meta_batch": 2, "chunk_tasks": 2}, "eval": {"tasks": 2},
    }))
    runs = tmp_path / "runs"
    line = refused(tmp_path, monkeypatch, capsys, "meta-train", path, "--runs-dir", runs)
    assert "'task.glyph_classes' = 10000000" in line and "needs an estimated" in line, line
    assert not runs.exists()


def test_a_refusal_names_the_key_of_the_dominant_part_furthest_above_its_default():
    from pcmmeta.experiment.memory import largest_size

    recipe = validate(with_key("task.shots", 1_000_000))
    assert largest_size(recipe, "activations") == "'task.shots' = 1000000"
    assert largest_size(recipe, "data") == "'task.shots' = 1000000"
    # a key that does not drive the part is not named: iterations cost time, not memory
    recipe = validate({**with_key("train.iterations", 10**9), "network": {"hidden": [400, 40]}})
    assert largest_size(recipe, "parameters") == "'network.hidden' = [400, 40]"
    assert largest_size(validate({}), "activations") is None


# ------------------------------------------------------------------ simulate-measurements
@pytest.mark.parametrize("flag", ["--devices", "--pulses"])
def test_simulate_measurements_refuses_sizes_beyond_memory_naming_the_flag(tmp_path, monkeypatch, capsys, flag):
    monkeypatch.delenv("PCMMETA_MEMORY_LIMIT", raising=False)
    out = tmp_path / "sim.csv"
    line = refused(tmp_path, monkeypatch, capsys, "simulate-measurements", flag, 10**9, "--out", out)
    assert f"{flag} 1000000000" in line and "needs an estimated" in line, line
    assert not out.exists()


def test_simulate_measurements_within_memory_is_not_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("PCMMETA_MEMORY_LIMIT", "1G")  # 2 devices × 21 events × 6 times: far below
    out = tmp_path / "sim.csv"
    result = invoke("simulate-measurements", "--devices", 2, "--out", out)
    assert result.exit_code == 0, result.output
    assert out.exists()


# --------------------------------------------------------------------------- drift-eval
@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    root = tmp_path_factory.mktemp("deployed")
    recipe = tiny_recipe(train__iterations=1, train__checkpoint_every=1, eval__tasks=2, eval__plot_tasks=0)
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(recipe))
    runs = root / "runs"
    assert invoke("meta-train", path, "--runs-dir", runs).exit_code == 0
    result = invoke("deploy", "--runs-dir", runs)
    assert result.exit_code == 0, result.output
    return runs


def test_drift_eval_refuses_more_tasks_than_fit_naming_the_flag(deployed, tmp_path, monkeypatch, capsys):
    # 10⁵ tasks evaluated in one call: ≈ 0.5 GB of activations alone, over a 1 GB limit with the runtime
    monkeypatch.setenv("PCMMETA_MEMORY_LIMIT", "1G")
    csv = tmp_path / "drift.csv"
    line = refused(tmp_path, monkeypatch, capsys, "drift-eval", "--runs-dir", deployed, "--tasks", 100_000, "--hours", "1", "--csv", csv)
    assert "--tasks 100000" in line and "needs an estimated" in line and "reduce --tasks" in line, line
    assert not csv.exists()


# ------------------------------------------------------------------ text values of a recipe
@pytest.mark.parametrize(
    "section, key, value, says",
    [
        (None, "device", "nandakumar\x1b[2J2018", "control character"),
        ("task", "data", "folder\x00name", "control character"),
        (None, "device", "d" * 500_000, "at most 4096 characters"),
    ],
)
def test_recipe_text_with_control_characters_or_absurd_length_names_the_key(tmp_path, section, key, value, says):
    user = {"name": "text", "task": {"family": "images"}} if section == "task" else {"name": "text"}
    (user[section] if section else user)[key] = value
    dotted = f"{section}.{key}" if section else key
    with pytest.raises(UserInputError) as err:
        validate(user, "r.yaml")
    message = str(err.value)
    assert message.startswith(f"r.yaml: '{dotted}': ") and says in message, message
    assert len(message) < 300 and "\x1b" not in message and "\x00" not in message


def test_a_recipe_file_with_an_escape_in_a_value_is_refused_naming_the_key(tmp_path, monkeypatch, capsys):
    path = tmp_path / "escape.yaml"
    path.write_text('name: t\ndevice: "nand\\e[2Jakumar2018"\n')
    runs = tmp_path / "runs"
    line = refused(tmp_path, monkeypatch, capsys, "meta-train", path, "--runs-dir", runs)
    assert f"{path}: 'device': control character" in line, line
    assert not runs.exists()


def test_bounds_of_a_list_of_integers_are_checked():
    field = Field([4, 4], "ints", "sizes", high=100)
    assert check(field, [100, 1], "k") == [100, 1]
    with pytest.raises(UserInputError, match=r"^k: every value must be ≤ 100, got \[4, 101\]"):
        check(field, [4, 101], "k")


# ----------------------------------------------------------------------- empty path flags
@pytest.mark.parametrize(
    "args, name",
    [
        (["adapt", "--support", ""], "'--support'"),
        (["fit-device", "--prior", "", "x.csv"], "'--prior'"),
        (["simulate-measurements", "--device", ""], "'--device'"),
        (["learn-programming", "--device", ""], "'--device'"),
        (["learn-programming", "--targets", ""], "'--targets'"),
        (["deploy", "--run", ""], "'--run'"),
        (["drift-eval", "--runs-dir", ""], "'--runs-dir'"),
        (["deploy", "--policy", "", "--method", "learned"], "'--policy'"),
        (["meta-train", "--resume", "--run", ""], "'--run'"),
        (["meta-train", ""], "'recipe'"),
        (["fit-device", ""], "'data"),
    ],
)
def test_an_empty_path_flag_is_refused_naming_the_flag(tmp_path, monkeypatch, capsys, args, name):
    line = refused(tmp_path, monkeypatch, capsys, *args)
    assert name in line and "empty" in line, line
    assert "'.'" not in line


# ------------------------------------------------------------- flags a support file overrides
@pytest.mark.parametrize(
    "flags, named",
    [
        (["--shots", "3"], "--shots:"),
        (["--task-seed", "7"], "--task-seed:"),
        (["--task-seed", "0"], "--task-seed:"),  # the default value, given: still refused
        (["--shots", "3", "--task-seed", "7"], "--shots and --task-seed:"),
    ],
)
def test_shots_and_task_seed_with_a_support_file_are_refused(tmp_path, monkeypatch, capsys, flags, named):
    support = tmp_path / "support.csv"
    support.write_text("x,y\n0,1\n1,2\n")
    runs = tmp_path / "runs"
    line = refused(tmp_path, monkeypatch, capsys, "adapt", "--runs-dir", runs, "--support", support, *flags)
    assert line.startswith(f"error: {named} not used with --support"), line


def test_a_support_file_alone_is_not_refused_for_shots(tmp_path, monkeypatch, capsys):
    support = tmp_path / "support.csv"
    support.write_text("x,y\n0,1\n1,2\n")
    line = refused(tmp_path, monkeypatch, capsys, "adapt", "--runs-dir", tmp_path / "runs", "--support", support)
    assert "--shots" not in line and "--task-seed" not in line  # refused for the missing run only
    assert "runs" in line, line
