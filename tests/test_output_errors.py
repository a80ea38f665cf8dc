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
