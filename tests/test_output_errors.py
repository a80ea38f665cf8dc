"""Outputs that cannot be written: a full disk while writing, a read-only runs root. Tests run as
root here (permissions do not stop root), so the operating system's errors are injected where
pcmmeta meets them: the temporary file's write and the run directory's mkdir."""

import errno
import os
from pathlib import Path

import pytest
import yaml
from tiny import tiny_recipe
from typer.testing import CliRunner

from pcmmeta.cli.app import app
from pcmmeta.errors import OutputError, UserInputError
from pcmmeta.io import runs


def test_disk_full_while_writing_keeps_the_previous_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "checkpoint.eqx"
    runs.atomic_write_bytes(target, b"previous")
    real_fdopen = os.fdopen

    class FullFile:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(runs.os, "fdopen", lambda fd, mode: FullFile(real_fdopen(fd, mode)))
    with pytest.raises(OutputError, match=r"checkpoint.eqx: cannot write: No space left on device"):
        runs.atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.eqx"]  # no .tmp left behind


def test_read_only_runs_root_is_one_line_before_anything_runs(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    root.mkdir()
    real_mkdir = Path.mkdir

    def read_only(self, *args, **kwargs):
        if self.parent == root:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only)
    with pytest.raises(UserInputError, match="cannot create a run directory there: Read-only file system; give --runs-dir a writable folder"):
        runs.new_run_dir(root, "tiny")
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe()))
    result = CliRunner().invoke(app, ["meta-train", str(recipe), "--runs-dir", str(root)])
    assert result.exit_code == 2, result.output
    assert "Read-only file system" in result.output and "Traceback" not in result.output
    assert list(root.iterdir()) == []


def test_a_folder_where_a_file_belongs_is_named_as_damage_not_as_a_write_failure(tmp_path):
    from pcmmeta.errors import UserInputError
    from pcmmeta.io.runs import atomic_write_bytes

    (tmp_path / "deploy.json").mkdir()
    with pytest.raises(UserInputError, match="deploy.json: is a folder where a file belongs"):
        atomic_write_bytes(tmp_path / "deploy.json", b"{}")
    assert list(tmp_path.iterdir()) == [tmp_path / "deploy.json"]  # no temporary left


@pytest.fixture
def unwritable(monkeypatch):
    """Make folders and files refuse writes where pcmmeta probes them (`pcmmeta.io.writable`):
    a new file in a listed folder (EROFS), appending to a listed file (EPERM, as `chattr +i`)."""
    from pcmmeta.io import writable

    folders: list[Path] = []
    files: list[Path] = []
    real_mkstemp, real_open = writable.tempfile.mkstemp, open

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and Path(dir).resolve() in folders:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real_mkstemp(*args, dir=dir, **kwargs)

    def opening(path, *args, **kwargs):
        if Path(path).resolve() in files:
            raise OSError(errno.EPERM, os.strerror(errno.EPERM))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(writable.tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(writable, "open", opening, raising=False)

    def make(path: Path) -> None:
        (folders if path.is_dir() else files).append(path.resolve())

    return make


def run_main(monkeypatch, capsys, *args) -> tuple[int, str]:
    """The command as the `pcmmeta` entry point runs it (errors mapped to exit codes):
    (exit code, stderr)."""
    import sys

    from pcmmeta.cli.app import main

    monkeypatch.setattr(sys, "argv", ["pcmmeta", *args])
    with pytest.raises(SystemExit) as leaving:
        main()
    return leaving.value.code, capsys.readouterr().err


def test_an_unwritable_latest_pointer_starts_no_run(tmp_path, monkeypatch, capsys, unwritable):
    root = tmp_path / "runs"
    root.mkdir()
    (root / "LATEST").write_text("earlier-run\n")
    unwritable(root / "LATEST")
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe()))
    code, err = run_main(monkeypatch, capsys, "meta-train", str(recipe), "--runs-dir", str(root))
    assert code == 1, err
    assert "LATEST: cannot write: Operation not permitted; nothing was done" in err
    assert sorted(p.name for p in root.iterdir()) == ["LATEST"]  # no run directory, no checkpoint
    assert (root / "LATEST").read_text() == "earlier-run\n"


@pytest.mark.parametrize(
    "command, flag, name",
    [
        (["deploy"], "--plot", "deploy.png"),
        (["drift-eval"], "--csv", "drift.csv"),
        (["drift-eval"], "--plot", "drift.png"),
        (["adapt", "--task-seed", "1"], "--plot", "adapt.png"),
        (["report"], "--out", "report.html"),
    ],
)
def test_an_output_in_a_read_only_folder_is_refused_before_the_run_is_read(
    tmp_path, monkeypatch, capsys, unwritable, command, flag, name
):
    """The flag's file is probed while the flags are parsed: the (absent) run is never opened,
    so no work is done and no run file (deploy.json, drift.json) is written before the failure."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    unwritable(folder)
    code, err = run_main(monkeypatch, capsys, *command, "--runs-dir", str(tmp_path / "runs"), flag, str(folder / name))
    assert code == 1, err
    assert f"{flag} {folder / name}: cannot write: Read-only file system; nothing was done" in " ".join(err.split())
    assert "no run found" not in err


def test_the_probe_leaves_the_folder_and_an_existing_file_as_they_were(tmp_path):
    from pcmmeta.io.writable import check_writable

    (tmp_path / "out.csv").write_text("kept")
    os.utime(tmp_path, ns=(1_000_000_000, 1_000_000_000))  # a folder last changed long ago
    before = os.stat(tmp_path / "out.csv")
    check_writable(tmp_path / "out.csv", "--csv")
    check_writable(tmp_path / "new.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]
    assert os.stat(tmp_path).st_mtime_ns == 1_000_000_000  # not even the folder's time changes
    assert (tmp_path / "out.csv").read_text() == "kept"
    assert os.stat(tmp_path / "out.csv").st_mtime_ns == before.st_mtime_ns


def test_a_run_folder_that_refuses_new_files_is_found_before_the_work(tmp_path, unwritable):
    from pcmmeta.io.writable import check_folder_writable

    check_folder_writable(tmp_path)  # a writable folder passes and keeps nothing
    assert list(tmp_path.iterdir()) == []
    unwritable(tmp_path)
    with pytest.raises(OutputError, match="cannot write there: Read-only file system; nothing was done"):
        check_folder_writable(tmp_path)
