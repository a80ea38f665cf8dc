"""What a newcomer sees first: the bare command, --version and the help texts (no JAX loaded)."""

import subprocess
import sys

from typer.testing import CliRunner

from pcmmeta.cli.app import app

runner = CliRunner()


def pcmmeta(*args):
    return subprocess.run([sys.executable, "-m", "pcmmeta.cli", *args], capture_output=True, text=True, timeout=60)


def test_bare_pcmmeta_prints_its_help_and_succeeds():
    result = pcmmeta()
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: ") and "error" not in result.stderr
    for command in ("meta-train", "deploy", "adapt", "drift-eval", "export", "import-chip", "report", "runs"):
        assert f"  {command} " in result.stdout, command
    assert "robot arm" in " ".join(result.stdout.split())


def test_version():
    from importlib.metadata import version

    result = pcmmeta("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"pcmmeta {version('pcmmeta')}"


def test_help_texts_keep_their_brackets_and_name_every_system():
    targets = runner.invoke(app, ["learn-programming", "--help"]).output
    assert "'uniform' over [g_min, g_max]" in " ".join(targets.split())
    adapt = " ".join(runner.invoke(app, ["adapt", "--help"]).output.split())
    assert "t,theta1,theta2" in adapt and "[default: the cost model's, 10 pJ]" in adapt
    assert all(rule in adapt for rule in ("blind-pulse", "planned-pulse", "quantized-sgd", "reprogram-sgd", "eprop-lsg"))
