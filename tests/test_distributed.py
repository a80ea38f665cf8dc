"""Two processes on one machine with `jax.distributed` (the only multi-host check one machine
allows): both train, only process 0 writes the run, and each one's --json stdout parses (native
libraries' own lines, such as Gloo's, go to stderr)."""

import json
import os
import socket
import subprocess
import sys

import pytest
import yaml
from tiny import tiny_recipe


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_train_one_run_and_print_parsable_json(tmp_path):
    recipe = tiny_recipe(train__iterations=2, train__checkpoint_every=2, eval__tasks=4, eval__plot_tasks=0)
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    address = f"127.0.0.1:{free_port()}"
    procs = []
    for pid in (0, 1):
        env = dict(
            os.environ,
            PCMMETA_COORDINATOR_ADDRESS=address,
            PCMMETA_NUM_PROCESSES="2",
            PCMMETA_PROCESS_ID=str(pid),
            JAX_PLATFORMS="cpu",
        )
        command = [sys.executable, "-c", "from pcmmeta.cli.console import entry; entry()"]
        args = ["meta-train", str(tmp_path / "r.yaml"), "--runs-dir", str(tmp_path / f"runs{pid}"), "--json"]
        procs.append(subprocess.Popen(command + args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
    bodies = [json.loads(out) for out, _ in outs]  # stdout is the JSON alone
    assert bodies[0]["n_tasks"] == bodies[1]["n_tasks"] == 4
    assert bodies[0]["mse_after"] == pytest.approx(bodies[1]["mse_after"])  # one computation, two processes
    assert (tmp_path / "runs0" / "LATEST").is_file() and not (tmp_path / "runs1").exists()  # process 0 writes
