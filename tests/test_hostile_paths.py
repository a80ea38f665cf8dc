"""Hostile paths and values met while the flags and files are read: an output that is a device,
a pipe, one of the command's inputs or a run's own file; a folder name where a file belongs;
an integer Python cannot read; long or absurd values. Each is one line, exit code 2, and
nothing in the folder changes (`refusal.refused`)."""

import os
import shutil
import stat
from pathlib import Path

import pytest
import yaml
from refusal import refused
from tiny import tiny_recipe

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "sample-measurements-SIMULATED.csv"


@pytest.fixture
def measured(tmp_path):
    shutil.copy(EXAMPLE, tmp_path / "in.csv")
    return tmp_path


def test_an_output_that_is_a_pipe_is_refused_and_stays_a_pipe(measured, monkeypatch, capsys):
    os.mkfifo(measured / "pipe")
    message = refused(measured, monkeypatch, capsys, "fit-device", "in.csv", "--out", "pipe")
    assert "--out" in message and "pipe: not a regular file (a device or pipe?)" in message
    assert stat.S_ISFIFO(os.stat(measured / "pipe").st_mode)


def test_the_library_never_replaces_a_device_or_pipe_with_a_file(tmp_path):
    from pcmmeta.errors import UserInputError
    from pcmmeta.io.runs import atomic_write_bytes

    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(UserInputError, match="not a regular file"):
        atomic_write_bytes(tmp_path / "pipe", b"x")
    assert stat.S_ISFIFO(os.stat(tmp_path / "pipe").st_mode)


@pytest.mark.parametrize("flag", ["--out", "--plot"])
def test_an_output_that_is_an_input_is_refused(measured, monkeypatch, capsys, flag):
    target = "in.csv" if flag == "--out" else "in.png"
    inputs = ["in.csv"] if flag == "--out" else ["in.csv", "in.png"]
    if flag == "--plot":  # a second measurement file named .png (--plot must end in .png)
        (measured / "in.png").write_bytes((measured / "in.csv").read_bytes() + b"\n")
    message = refused(measured, monkeypatch, capsys, "fit-device", *inputs, flag, target)
    assert f"{flag} {target}: is an input of this command" in message


def test_the_same_measurement_under_two_names_is_refused(measured, monkeypatch, capsys):
    shutil.copy(measured / "in.csv", measured / "again.csv")
    message = refused(measured, monkeypatch, capsys, "fit-device", "in.csv", "again.csv", "--out", "f.yaml")
    assert "again.csv: the same bytes as in.csv: one measurement given twice" in message


def test_an_output_naming_a_runs_own_file_is_refused(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "recipe.yaml").write_text("name: x\n")
    (run / "deployed.eqx").write_bytes(b"the array")
    message = refused(tmp_path, monkeypatch, capsys, "drift-eval", "--run", "run", "--csv", "run/deployed.eqx")
    assert "run/deployed.eqx: a file of the run run (pcmmeta keeps it)" in message
    assert (run / "deployed.eqx").read_bytes() == b"the array"


@pytest.mark.parametrize("args", [["fit-device", "in.csv", "--out", "newdir/"], ["simulate-measurements", "--out", "newdir/"]])
def test_a_folder_name_where_a_file_belongs_is_refused_not_made_a_file(measured, monkeypatch, capsys, args):
    message = refused(measured, monkeypatch, capsys, *args)
    assert "newdir/: ends in '/', a folder; expected a file name" in message
    assert not (measured / "newdir").exists()


def test_a_latest_pointer_that_is_a_folder_starts_no_run(tmp_path, monkeypatch, capsys):
    (tmp_path / "runs" / "LATEST").mkdir(parents=True)
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(tiny_recipe()))
    message = refused(tmp_path, monkeypatch, capsys, "meta-train", "r.yaml", "--runs-dir", "runs")
    assert "LATEST: is a folder where the latest run's name belongs" in message
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["LATEST"]


def test_an_integer_of_thousands_of_digits_names_its_line_or_flag(tmp_path, monkeypatch, capsys):
    (tmp_path / "r.yaml").write_text("name: x\nseed: " + "9" * 5000 + "\n")
    assert "r.yaml:2: an integer of 5,000 digits" in refused(tmp_path, monkeypatch, capsys, "meta-train", "r.yaml")
    (tmp_path / "ok.yaml").write_text(yaml.safe_dump(tiny_recipe()))
    message = refused(tmp_path, monkeypatch, capsys, "meta-train", "ok.yaml", "--set", "seed=" + "9" * 5000)
    assert "--set seed: an integer of 5,000 digits" in message


def test_a_long_set_value_keeps_the_reason_in_the_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(tiny_recipe()))
    message = refused(tmp_path, monkeypatch, capsys, "meta-train", "r.yaml", "--set", "zzz=" + "a" * 500)
    assert message.endswith("unknown key 'zzz'") and len(message) < 300


@pytest.mark.parametrize(
    "args, says",
    [
        (["deploy", "--set-ns", "inf"], "--set-ns"),
        (["deploy", "--read-ns", "1e308"], "--read-ns"),
        (["drift-eval", "--hours", ",".join(str(h) for h in range(1, 102))], "--hours: 101 times; give at most 100"),
        (["adapt", "--support", " "], "--support"),
    ],
)
def test_absurd_flag_values_name_the_flag(tmp_path, monkeypatch, capsys, args, says):
    assert says in refused(tmp_path, monkeypatch, capsys, *args, "--runs-dir", "runs")


def test_support_values_whose_squares_overflow_are_refused_naming_the_line(tmp_path):
    from pcmmeta.core.tasks import Sinusoid
    from pcmmeta.errors import UserInputError
    from pcmmeta.io.support_file import read_support

    (tmp_path / "s.csv").write_text("x,y\n0,1\n1,1e30\n2,1\n")
    with pytest.raises(UserInputError, match=r"s.csv:3: column 'y' holds 1e\+30; support values must be within"):
        read_support(Sinusoid(), tmp_path / "s.csv")


def test_too_many_ways_or_shots_for_the_glyphs_names_the_key():
    from pcmmeta.errors import UserInputError
    from pcmmeta.experiment.recipe import validate
    from pcmmeta.io.task_data import build_task_family

    small = {"family": "images", "glyph_classes": 40, "glyph_drawings": 20}
    with pytest.raises(UserInputError, match=r"^'task.ways' = 30: .*reduce task.ways$"):
        build_task_family(validate({"name": "g", "task": {**small, "ways": 30}})["task"])
    with pytest.raises(UserInputError, match=r"^'task.shots' \+ 'task.queries' = 21: .*reduce task.shots or task.queries$"):
        build_task_family(validate({"name": "g", "task": {**small, "shots": 5, "queries": 16}})["task"])


def test_damaged_run_files_are_named_as_damage(tmp_path, monkeypatch, capsys):
    (tmp_path / "runs" / "LATEST").mkdir(parents=True)
    message = refused(tmp_path, monkeypatch, capsys, "adapt", "--runs-dir", "runs")
    assert "LATEST: is a folder where the latest run's name belongs" in message
    run = tmp_path / "run"
    (run / "checkpoint.eqx").mkdir(parents=True)
    (run / "recipe.yaml").write_text(yaml.safe_dump(tiny_recipe()))
    message = refused(tmp_path, monkeypatch, capsys, "deploy", "--run", "run")
    assert "checkpoint.eqx: is a folder or a broken link where the checkpoint belongs" in message
