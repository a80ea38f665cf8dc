"""Interrupts, concurrent runs, terminal safety, special files, exact outputs, full disks.

Each test runs the real `pcmmeta` process (the console entry point) in a subprocess, as a user
would. The slow ones are marked `slow`; CI runs them all.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from tiny import tiny_recipe

ENTRY = "from pcmmeta.cli.console import entry; entry()"
ENV = dict(os.environ, JAX_PLATFORMS="cpu")


# How the child starts with SIGINT: "handled", as at a terminal (Ctrl-C) — also when the tests
# themselves run as a background job of a script, whose children inherit SIGINT ignored — or
# "ignored", as such a background job (pcmmeta keeps an inherited SIG_IGN).
SIGINT_AT_START = {
    "handled": "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); ",
    "ignored": "import signal; signal.signal(signal.SIGINT, signal.SIG_IGN); ",
}


def start(args, cwd, file_size_limit=None, env=None, sigint="handled"):
    # the limit is set by the child itself: no fork-time hook in this (multithreaded) process
    limit = f"import resource; resource.setrlimit(resource.RLIMIT_FSIZE, ({file_size_limit}, {file_size_limit})); " if file_size_limit else ""
    prefix = SIGINT_AT_START[sigint] + limit
    return subprocess.Popen([sys.executable, "-c", prefix + ENTRY, *map(str, args)], cwd=cwd, env=dict(ENV, **(env or {})), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def run(args, cwd, timeout=300, **kw):
    proc = start(args, cwd, **kw)
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def write_recipe(folder, **overrides):
    path = Path(folder) / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe(**overrides)))
    return path


def wait_for(predicate, timeout=120.0, step=0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(step)
    return False


def assert_one_clean_line(err):
    assert "Traceback" not in err, err
    return err.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("robust")
    code, out, err = run(["meta-train", write_recipe(root, train__iterations=2, eval__tasks=4, eval__plot_tasks=0)], root)
    assert code == 0, err
    code, out, err = run(["deploy"], root)
    assert code == 0, err
    return root


# ------------------------------------------------------------------------------ interrupts
@pytest.mark.slow
def test_sigint_right_at_start_ends_cleanly_and_writes_nothing(tmp_path):
    recipe = write_recipe(tmp_path)
    proc = start(["meta-train", recipe], tmp_path)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    line = assert_one_clean_line(err)
    assert line.startswith("interrupted; ")
    runs = tmp_path / "runs"
    assert not runs.exists() or not any(p.is_dir() for p in runs.iterdir()) or (runs / "LATEST").exists()


@pytest.mark.slow
def test_a_background_job_with_sigint_ignored_is_not_stopped_by_it(tmp_path):
    # a script's `pcmmeta meta-train … &` inherits SIGINT ignored: a Ctrl-C meant for the script's
    # foreground must not end (or half-write) the background training
    recipe = write_recipe(tmp_path)
    proc = start(["meta-train", recipe, "--json"], tmp_path, sigint="ignored")
    assert wait_for(lambda: (tmp_path / "runs").exists() and any((tmp_path / "runs").glob("*/recipe.yaml")))
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    report = json.loads(out[out.index("{"):])
    assert (tmp_path / report["run_dir"] / "checkpoint.eqx").is_file()  # run_dir: relative to the run's cwd, or absolute
    assert "interrupted" not in err


@pytest.mark.slow
def test_sigint_during_compilation_keeps_only_resumable_runs(tmp_path):
    recipe = write_recipe(tmp_path, network__hidden=[32, 32], network__time_steps=40)
    proc = start(["meta-train", recipe], tmp_path)
    assert wait_for(lambda: (tmp_path / "runs").exists() and any((tmp_path / "runs").glob("*/recipe.yaml")))
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert time.monotonic() - t0 < 5
    assert proc.returncode == 130, err
    line = assert_one_clean_line(err)
    assert line.startswith("interrupted")
    for run_dir in (tmp_path / "runs").glob("tiny-*"):
        assert (run_dir / "checkpoint.eqx").is_file(), "a run directory without a checkpoint was left behind"
        assert f"--run {run_dir.relative_to(tmp_path)}" in line or str(run_dir) in line


@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_mid_training_saves_a_checkpoint_and_says_how_to_resume(tmp_path, signum, code):
    recipe = write_recipe(tmp_path, train__iterations=100000, train__log_every=1, train__checkpoint_every=100000)
    proc = start(["meta-train", recipe], tmp_path)
    metrics = lambda: list((tmp_path / "runs").glob("tiny-*/metrics.jsonl"))
    assert wait_for(lambda: metrics() and metrics()[0].stat().st_size > 0)
    t0 = time.monotonic()
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=30)
    assert time.monotonic() - t0 < 3
    assert proc.returncode == code, err
    line = assert_one_clean_line(err)
    assert ("interrupted at iteration" if signum == signal.SIGINT else "terminated at iteration") in line
    assert "pcmmeta meta-train --resume --run" in line
    from pcmmeta.experiment.train import load_run

    run_dir = metrics()[0].parent
    _, state = load_run(run_dir)
    assert f"iteration {int(state.iteration)};" in line and int(state.iteration) >= 1


@pytest.mark.slow
def test_sigint_during_deploy_never_crashes(trained):
    for delay in (0.2, 1.0, 2.0, 3.0):
        proc = start(["deploy", "--method", "write-verify"], trained)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode in (0, 130), (delay, proc.returncode, err)  # finished, or interrupted: never a crash
        assert "Traceback" not in err
        if proc.returncode == 130:
            assert assert_one_clean_line(err) == "interrupted; nothing written"


# ------------------------------------------------------------------------ concurrency
@pytest.mark.slow
def test_concurrent_adapts_write_distinct_files(trained):
    procs = [start(["adapt", "--task-seed", 1, "--json"], trained) for _ in range(4)]
    paths = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        paths.append(json.loads(out)["adapted_array"])
    assert len(set(paths)) == 4
    assert all(Path(trained, p).stat().st_size > 0 for p in paths)
    run_dir = Path(trained, paths[0]).parent
    assert not list(run_dir.glob(".*.tmp"))


@pytest.mark.slow
def test_concurrent_meta_trains_get_their_own_run_directories(tmp_path):
    recipe = write_recipe(tmp_path, train__iterations=2, eval__tasks=2, eval__plot_tasks=0)
    procs = [start(["meta-train", recipe, "--json"], tmp_path) for _ in range(3)]
    dirs = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        dirs.append(json.loads(out[out.index("{"):])["run_dir"])
    assert len(set(dirs)) == 3


# --------------------------------------------------------------------- terminal safety
@pytest.mark.parametrize(
    "text, expect",
    [
        ("train:\n  \"\\e[2Jboom\": 1\n", "\\x1b[2Jboom"),
        ("name: [" + ", ".join(["x" * 1000] * 50) + "]\n", "bytes)"),
        ("name: " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
        ("name:\n  - &a [1, 1, 1, 1, 1, 1, 1, 1, 1]\n  - &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n  - &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
         "  - &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n  - [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n", "must be a file name"),
    ],
    ids=["escape", "huge-value", "deep-nesting", "alias-bomb"],
)
def test_user_text_is_escaped_and_bounded(tmp_path, text, expect):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    code, out, err = run(["meta-train", path], tmp_path, timeout=60)
    assert code == 2, err
    assert "\x1b" not in err and len(err) < 2000, err[:500]
    assert expect in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("device", ["/dev/zero", "FOLDER"])
def test_special_files_are_refused_in_one_line(tmp_path, device):
    if device == "FOLDER":
        (tmp_path / "dev.yaml").mkdir()
        device = str(tmp_path / "dev.yaml")
    path = write_recipe(tmp_path, device=device)
    code, out, err = run(["meta-train", path], tmp_path, timeout=60)
    assert code == 2, err
    assert ("not a regular file" in err) or ("is a folder" in err), err
    assert len(err.strip().splitlines()) == 1


# ------------------------------------------------------------------------ exact outputs
def test_measurement_csv_round_trip_keeps_every_number(tmp_path):
    from pcmmeta.io.measurements import Measurements, read_measurements, write_measurements

    rng = np.random.default_rng(0)
    n = 6
    data = Measurements(
        group=np.repeat(np.arange(2), 3), t_s=np.array([2592001.0, 2592003.0, 0.1 + 0.2, 1e-7, 123456.789012345, 3.0]),
        g_uS=rng.uniform(0.1, 12, n), group_device=np.array([0, 1]), group_pulse=np.array([0, 0]), device_names=["a", "b"],
    )
    write_measurements(data, tmp_path / "m.csv")
    back = read_measurements([tmp_path / "m.csv"])
    np.testing.assert_array_equal(np.sort(back.t_s), np.sort(data.t_s))
    np.testing.assert_array_equal(np.sort(back.g_uS), np.sort(data.g_uS))


def test_json_output_is_strict_with_one_evaluation_task(tmp_path):
    path = write_recipe(tmp_path, train__iterations=1, eval__tasks=1, eval__plot_tasks=0)
    code, out, err = run(["meta-train", path, "--json"], tmp_path)
    assert code == 0, err
    body = json.loads(out[out.index("{"):], parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert body["sem_mse_after"] is None


# ---------------------------------------------------------------------------- full disk
@pytest.mark.slow
def test_file_size_limit_during_deploy_is_one_line_and_keeps_earlier_outputs(trained):
    run_dir = trained / "runs" / (trained / "runs" / "LATEST").read_text().strip()
    before = (run_dir / "deployed.eqx").read_bytes()
    # an empty compilation cache: its entries cannot be written either, which must stay silent
    cache = trained / "empty-compile-cache"
    code, out, err = run(["deploy", "--seed", 7], trained, file_size_limit=2000, env={"PCMMETA_COMPILE_CACHE": str(cache)})
    assert code == 1, err
    line = assert_one_clean_line(err)
    assert "deployed.eqx: cannot write" in line and len(err.strip().splitlines()) == 1
    assert (run_dir / "deployed.eqx").read_bytes() == before
    assert not list(run_dir.glob(".*.tmp"))


def test_file_size_limit_during_simulate_measurements(tmp_path):
    (tmp_path / "m.csv").write_text("previous\n")
    code, out, err = run(["simulate-measurements", "--devices", 50, "--out", tmp_path / "m.csv"], tmp_path, file_size_limit=1000)
    assert code == 1, err
    assert "m.csv: cannot write" in assert_one_clean_line(err)
    assert (tmp_path / "m.csv").read_text() == "previous\n"


@pytest.mark.slow
def test_kill_9_mid_training_then_resume_finishes_the_run(tmp_path):
    recipe = write_recipe(tmp_path, train__iterations=600, train__checkpoint_every=20, train__log_every=10, eval__tasks=2, eval__plot_tasks=0)
    proc = start(["meta-train", recipe], tmp_path)
    metrics = lambda: list((tmp_path / "runs").glob("tiny-*/metrics.jsonl"))
    lines = lambda: metrics()[0].read_text().count("\n") if metrics() else 0
    assert wait_for(lambda: lines() >= 3)  # past the checkpoint at iteration 20
    proc.send_signal(signal.SIGKILL)  # no handler, no cleanup: the process just stops
    proc.communicate(timeout=30)
    run_dir = metrics()[0].parent
    from pcmmeta.experiment.train import load_run

    _, state = load_run(run_dir)
    killed_at = int(state.iteration)
    assert killed_at >= 20 and killed_at % 20 == 0
    code, out, err = run(["meta-train", "--resume", "--run", run_dir.relative_to(tmp_path)], tmp_path)
    assert code == 0, err
    iterations = [json.loads(line)["iteration"] for line in metrics()[0].read_text().splitlines()]
    assert iterations == list(range(10, 601, 10)), "lines after the checkpoint are rewritten once, none lost or doubled"
    assert json.loads((run_dir / "evaluation.json").read_text())["n_tasks"] == 2
