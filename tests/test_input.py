"""Hostile input, checked in-process where it enters: YAML files, seeds, run names, device
parameters, flags, damaged run files. Each refusal is one `UserInputError` line naming the file,
line, key or flag; the CLI turns it into exit code 2 (tests/test_robustness.py runs the process)."""

import pytest
import yaml
from refusal import refused

from pcmmeta.errors import UserInputError
from pcmmeta.experiment.recipe import load_recipe
from pcmmeta.io.runs import MAX_YAML_BYTES, MAX_YAML_VALUES, read_yaml
from pcmmeta.io.support_file import read_support


def write(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


# ---------------------------------------------------------------------------------- YAML
@pytest.mark.parametrize(
    "content, message",
    [
        (b"name: caf\xe9\n", "r.yaml:1: not UTF-8 text (byte 0xe9)"),
        ("seed: 1\ntrain:\n  iterations: 2\nseed: 2\n", "r.yaml:4: key 'seed' given twice (first on line 1)"),
        ("train:\n  iterations: 1\n  iterations: 2\n", "r.yaml:3: key 'iterations' given twice (first on line 2)"),
        ("{a: 1, a: 2}\n", "key 'a' given twice"),
        ('name: "a\\0b"\n', "r.yaml:1: 'name': the value holds a NUL character"),
        ('task:\n  family: "a\\0b"\n', "r.yaml:2: 'family': the value holds a NUL character"),
        ('hidden: ["a\\0b"]\n', "r.yaml:1: a string holds a NUL character"),
        (b"name: a\x00b\n", "r.yaml:1: 'name': not valid YAML: character U+0000 is not allowed"),
        ("a: [1\n", "r.yaml:2: not valid YAML"),
    ],
    ids=[
        "not-utf8",
        "duplicate-key",
        "duplicate-nested-key",
        "duplicate-flow-key",
        "nul-escape",
        "nul-escape-nested",
        "nul-in-list",
        "nul-byte",
        "syntax",
    ],
)
def test_yaml_files_are_read_strictly(tmp_path, content, message):
    path = write(tmp_path, "r.yaml", content)
    with pytest.raises(UserInputError) as err:
        read_yaml(path)
    assert message in str(err.value)


def test_an_oversized_yaml_file_names_the_line_and_key_that_hold_most_of_it(tmp_path):
    value = "a" * (MAX_YAML_BYTES + 10)
    path = write(tmp_path, "r.yaml", f"seed: 0\ntask:\n  family: {value}\nname: x\n")
    with pytest.raises(UserInputError) as err:
        read_yaml(path)
    assert f"r.yaml:3: 'family': a line of {len(value) + 10:,} bytes" in str(err.value)
    # many short lines: no line to blame, the size alone
    many = write(tmp_path, "m.yaml", "# a comment line\n" * (MAX_YAML_BYTES // 10))
    with pytest.raises(UserInputError, match=r"m.yaml: [\d,]+ bytes, more than a recipe or device file may hold"):
        read_yaml(many)


def test_yaml_merge_keys_and_small_aliases_still_work(tmp_path):
    path = write(tmp_path, "r.yaml", "base: &b {seed: 1, name: x}\nrun:\n  <<: *b\n  seed: 2\nlists: [&l [1, 2], *l]\n")
    assert read_yaml(path) == {"base": {"seed": 1, "name": "x"}, "run": {"seed": 2, "name": "x"}, "lists": [[1, 2], [1, 2]]}


def test_alias_bomb_is_refused_before_it_expands(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):  # 10^9 values from a few hundred bytes
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    path = write(tmp_path, "r.yaml", "\n".join(lines) + "\n")
    assert path.stat().st_size < 1000
    with pytest.raises(UserInputError, match=f"aliases expand to more than {MAX_YAML_VALUES:,} values"):
        read_yaml(path)
    # just under the limit is fine: the limit counts values, not aliases
    small = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\na1: &a1 [" + ", ".join(["*a0"] * 10) + "]\n"
    assert len(read_yaml(write(tmp_path, "s.yaml", small))["a1"]) == 10


@pytest.mark.parametrize("content", ["", "# only a comment\n", "~\n", "{}\n", "[]\n"])
def test_an_empty_recipe_is_refused_not_silently_the_full_default(tmp_path, content):
    with pytest.raises(UserInputError, match="r.yaml: empty recipe; start from one in recipes/"):
        load_recipe(write(tmp_path, "r.yaml", content))


@pytest.mark.parametrize("content", ["42\n", "- a\n- b\n", "just text\n"])
def test_a_recipe_that_is_not_a_mapping_is_refused(tmp_path, content):
    with pytest.raises(UserInputError, match="r.yaml: 'recipe' must be a mapping"):
        load_recipe(write(tmp_path, "r.yaml", content))


def test_a_folder_given_as_the_recipe_is_named_as_a_folder(tmp_path):
    (tmp_path / "r.yaml").mkdir()
    with pytest.raises(UserInputError, match="r.yaml: is a folder, expected a file"):
        load_recipe(tmp_path / "r.yaml")


# --------------------------------------------------------------------------------- seeds
def test_seeds_span_0_to_2_to_the_64_and_each_has_its_own_key():
    import jax
    import numpy as np

    from pcmmeta.core.seeds import SEED_MAX, seed_key

    data = lambda seed: np.asarray(jax.random.key_data(seed_key(seed)))
    for small in (0, 7, 2**31, 2**32 - 1):  # below 2^32: the key jax.random.key gives (old runs keep their numbers)
        np.testing.assert_array_equal(data(small), np.asarray(jax.random.key_data(jax.random.key(small))))
    big = [2**32, 2**33 + 7, 2**63, SEED_MAX]
    keys = {tuple(data(s)) for s in [0, 7, *big]}
    assert len(keys) == 6, "jax.random.key alone maps 2^32 to the key of 0"
    for bad in (-1, SEED_MAX + 1, 2**200, 1.5, True, "3"):
        with pytest.raises(UserInputError, match="must be a whole number from 0 to 2\\^64-1"):
            seed_key(bad)


@pytest.mark.parametrize("key", ["seed", "eval.seed"])
@pytest.mark.parametrize("value, ok", [(2**64 - 1, True), (2**64, False), (-1, False), (2**100, False)])
def test_recipe_seeds_are_checked_where_they_enter(key, value, ok):
    from pcmmeta.experiment.recipe import validate

    user = {"seed": value} if key == "seed" else {"eval": {"seed": value}}
    if ok:
        section = validate(user)
        assert (section["seed"] if key == "seed" else section["eval"]["seed"]) == value
    else:
        with pytest.raises(UserInputError, match=f"'{key}': must be a whole number from 0 to 2\\^64-1"):
            validate(user)


@pytest.mark.parametrize("argv", [["deploy", "--seed", str(2**64)], ["adapt", "--task-seed", str(2**64)], ["drift-eval", "--seed", "-1"],
                                  ["simulate-measurements", "--seed", str(2**70)]])
def test_seed_flags_beyond_64_bits_are_refused_before_any_work(tmp_path, argv, monkeypatch, capsys):
    from pcmmeta.cli import app as cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["pcmmeta", *argv])
    with pytest.raises(SystemExit) as code:
        cli.main()
    assert code.value.code == 2
    err = capsys.readouterr().err
    assert "Invalid value for '--" in err and "seed" in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- run names
@pytest.mark.parametrize("name", ["../../escaped", "a/b", "..", "/tmp/abs", ".hidden", "-flag", "my run", "a\x1bb", "x" * 81])
def test_a_run_name_can_never_place_the_run_outside_the_runs_root(tmp_path, name):
    from pcmmeta.experiment.recipe import validate
    from pcmmeta.io.runs import new_run_dir

    with pytest.raises(UserInputError, match="'name': must be a file name"):
        validate({"name": name})
    with pytest.raises(UserInputError, match="run name: must be a file name"):
        new_run_dir(tmp_path / "runs", name)  # the library refuses it too
    assert not (tmp_path / "runs").exists() and sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["sine-quick", "glyphs-5way-5shot", "café_2", "v1.2+b"])
def test_ordinary_run_names_are_kept(tmp_path, name):
    from pcmmeta.io.runs import new_run_dir

    run_dir = new_run_dir(tmp_path / "runs", name)
    assert run_dir.parent == tmp_path / "runs" and run_dir.name.startswith(name + "-")


def test_a_runs_root_that_is_a_file_is_one_line(tmp_path):
    from pcmmeta.io.runs import new_run_dir

    (tmp_path / "afile").write_text("x")
    with pytest.raises(UserInputError, match="afile: not a folder; give --runs-dir a folder"):
        new_run_dir(tmp_path / "afile", "sine")
    with pytest.raises(UserInputError, match="afile/sub: cannot create a run directory there: Not a directory"):
        new_run_dir(tmp_path / "afile" / "sub", "sine")
    assert (tmp_path / "afile").read_text() == "x"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["meta-train", "tiny.yaml", "--resume"], "give a recipe (a new run) or --resume (continue a run), not both"),
        (["meta-train", "tiny.yaml", "--run", "runs/x"], "--run names a run to continue: add --resume"),
        (["meta-train", "tiny.yaml", "--runs-dir", "afile"], "afile: not a folder; give --runs-dir a folder"),
    ],
)
def test_meta_train_flags_are_used_or_refused_never_ignored(tmp_path, monkeypatch, capsys, argv, message):
    from tiny import tiny_recipe

    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(tiny_recipe()))
    (tmp_path / "afile").write_text("x")
    assert message in refused(tmp_path, monkeypatch, capsys, *argv)


# --------------------------------------------------------------------------------- flags
@pytest.mark.parametrize(
    "argv, message",
    [
        (["adapt", "--at-hours", "inf"], "Invalid value for '--at-hours'"),
        (["adapt", "--at-hours", "1e400"], "Invalid value for '--at-hours'"),
        (["adapt", "--at-hours", "nan"], "'--at-hours'"),
        (["adapt", "--at-hours", "1e9"], "'--at-hours'"),
        (["adapt", "--energy-pj", "inf"], "'--energy-pj': must be a finite number"),
        (["deploy", "--tolerance", "0"], "'--tolerance': must be > 0"),
        (["deploy", "--tolerance", "inf"], "'--tolerance': must be a finite number"),
        (["deploy", "--max-pulses", "1000000000"], "'--max-pulses'"),
        (["adapt", "--shots", "100000000"], "'--shots'"),
        (["drift-eval", "--tasks", "1000000000"], "'--tasks'"),
        (["drift-eval", "--hours", "1,,2"], "--hours: empty item in '1,,2'"),
        (["drift-eval", "--hours", "1,24,"], "--hours: empty item"),
        (["drift-eval", "--hours", "1,nan"], "--hours: times must be > 0"),
        (["drift-eval", "--hours", "1,1e300"], "--hours: times must be > 0"),
        (["deploy", "--plot", "missing/x.png"], "'--plot': missing: no such folder"),
        (["deploy", "--plot", "x.xyz"], "'--plot': x.xyz: the plot is a PNG"),
        (["adapt", "--plot", "afolder.png"], "'--plot': afolder.png: is a folder"),
        (["drift-eval", "--csv", "missing/r.csv"], "'--csv': missing: no such folder"),
    ],
)
def test_bad_flags_are_refused_before_any_work(tmp_path, monkeypatch, capsys, argv, message):
    (tmp_path / "afolder.png").mkdir()
    assert message in refused(tmp_path, monkeypatch, capsys, *argv)


def test_support_values_beyond_float32_are_refused(tmp_path):
    from pcmmeta.core.tasks.sinusoid import Sinusoid

    path = write(tmp_path, "s.csv", "x,y\n1,2\n3,1e39\n")
    with pytest.raises(UserInputError, match="s.csv:3: column 'y' holds 1e\\+39; support values must be within"):
        read_support(Sinusoid(), path)
    assert read_support(Sinusoid(), write(tmp_path, "ok.csv", "x,y\n1,2\n3,1e15\n")).y_support.shape == (1, 2)


# -------------------------------------------------------------------- damaged run files
@pytest.fixture
def run_dir(tmp_path):
    """A run directory as meta-train and deploy leave it (initial checkpoint, a deployed array of
    the right shape), made without training: the tests only damage and load it."""
    from tiny import tiny_recipe

    from pcmmeta.experiment.chip import array_like, load_array, save_array
    from pcmmeta.experiment.train import (
        build_experiment,
        init_state,
        load_run,
        make_optimizer,
        save_checkpoint,
        start_run,
    )
    from pcmmeta.io.runs import set_latest

    recipe = tiny_recipe()
    run = start_run(recipe, tmp_path / "runs")
    exp = build_experiment(recipe)
    save_checkpoint(run / "checkpoint.eqx", init_state(exp, make_optimizer(exp.train)))
    save_array(run / "deployed.eqx", array_like(exp.network))
    set_latest(run)
    _, state = load_run(run)  # undamaged, it loads: the refusals below come from the damage
    load_array(run / "deployed.eqx", state.network)
    return run


def cut(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize(
    "damage, argv, message",
    [
        (lambda r: cut(r / "checkpoint.eqx"), ["deploy"], "checkpoint.eqx: does not match this run's checkpoint (damaged"),
        (lambda r: cut(r / "checkpoint.eqx"), ["meta-train", "--resume"], "nothing to resume from: train again with `pcmmeta meta-train "),
        (lambda r: cut(r / "deployed.eqx"), ["adapt"], "deployed.eqx: does not match this run's deployed array"),
        (lambda r: cut(r / "deployed.eqx"), ["drift-eval"], "; deploy again with `pcmmeta deploy --run "),
        (lambda r: (r / "recipe.yaml").write_text("train: [unclosed\n"), ["deploy"], "recipe.yaml:2: not valid YAML; the run's recipe is damaged"),
        (lambda r: (r / "recipe.yaml").write_bytes(b"\x00\xff\xfe"), ["meta-train", "--resume"], "recipe.yaml:1: not UTF-8 text"),
        (lambda r: (r / "recipe.yaml").write_text("- a list\n"), ["adapt"], "recipe.yaml: not a recipe (a YAML mapping)"),
        (lambda r: (r.parent / "LATEST").write_bytes(b"\x00\xff\x80\x01"), ["adapt"], "LATEST: damaged (it should hold one run directory's name)"),
        (lambda r: (r.parent / "LATEST").write_text("../../elsewhere\n"), ["deploy"], "LATEST: damaged"),
        (lambda r: (r / "run.json").write_text('{"format": '), ["drift-eval"], 'run.json: damaged (expected {"format": 3})'),
    ],
    ids=["checkpoint-deploy", "checkpoint-resume", "deployed-adapt", "deployed-drift-eval", "recipe-not-yaml", "recipe-binary",
         "recipe-list", "latest-binary", "latest-outside", "run-json"],
)
def test_damaged_run_files_are_one_line_naming_the_file_and_what_to_do(run_dir, monkeypatch, capsys, damage, argv, message):
    damage(run_dir)
    root = run_dir.parent.parent
    files = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert message in refused(root, monkeypatch, capsys, *argv)
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == files, "a refused command modified the run"


def test_overrides_that_change_a_plug_in_get_its_own_defaults(tmp_path):
    from pcmmeta.experiment.recipe import load_recipe

    path = tmp_path / "r.yaml"
    path.write_text("name: r\ntrain:\n  iterations: 5\n")
    recipe = load_recipe(path, {"inner.rule": "quantized-sgd", "train.iterations": 7})
    assert recipe["inner"]["rule"] == "quantized-sgd" and recipe["inner"]["steps"] == 4  # not blind-pulse's 1
    assert recipe["train"]["iterations"] == 7 and "pulse_threshold" not in recipe["inner"]
    path.write_text("name: r\ninner:\n  pulse_threshold: 0.3\n")
    with pytest.raises(UserInputError, match=r"r\.yaml with inner\.rule=planned-pulse: unknown key 'inner\.pulse_threshold'"):
        load_recipe(path, {"inner.rule": "planned-pulse"})
    with pytest.raises(UserInputError, match="'name.x': 'name' is not a section"):
        load_recipe(path, {"name.x": 1})
