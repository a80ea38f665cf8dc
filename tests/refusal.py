"""The CLI's contract for bad input, checked in one place: exit code 2, one line, no traceback,
and no file created or changed."""

import pytest


def refused(folder, monkeypatch, capsys, *argv) -> str:
    """Run the CLI in-process in `folder`; assert the contract; the message (stripped)."""
    from pcmmeta.cli import app as cli

    monkeypatch.chdir(folder)
    before = {p: p.stat().st_mtime_ns for p in folder.rglob("*")}
    monkeypatch.setattr("sys.argv", ["pcmmeta", *map(str, argv)])
    with pytest.raises(SystemExit) as code:
        cli.main()
    err = capsys.readouterr().err
    assert code.value.code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*")} == before
    return err.strip()
