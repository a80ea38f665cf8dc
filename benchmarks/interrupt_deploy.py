"""SIGINT during `pcmmeta deploy`, many times at spread-out moments: how does the process end?

Usage: python benchmarks/interrupt_deploy.py RUNS_PARENT [--trials 20] [--checkout DIR]
RUNS_PARENT is a folder whose runs/ holds a trained run (`pcmmeta meta-train` there first).
`--checkout DIR` runs the pcmmeta of another checkout (e.g. a `git worktree` of an older
commit) with `python -m pcmmeta.cli`, to compare. Prints the count of each exit code: 130 is a
clean interrupt, 0 a deploy that finished first, negative codes are deaths by a signal (−11: a
segmentation fault, −2: killed by SIGINT with a traceback).
"""

import argparse
import collections
import os
import subprocess
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs_parent")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--checkout", default=None)
    args = parser.parse_args()
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    if args.checkout:
        env["PYTHONPATH"] = args.checkout
        cmd = [sys.executable, "-m", "pcmmeta.cli", "deploy"]
    else:
        cmd = [sys.executable, "-c", "from pcmmeta.cli.console import entry; entry()", "deploy"]
    codes, tracebacks = collections.Counter(), 0
    for i in range(args.trials):
        proc = subprocess.Popen(cmd, cwd=args.runs_parent, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(0.3 + 0.25 * (i % 14))  # from start-up to the end of programming
        proc.send_signal(2)
        _, err = proc.communicate()
        codes[proc.returncode] += 1
        tracebacks += "Traceback" in err
    print({"checkout": args.checkout or "installed", "trials": args.trials, "exit_codes": dict(sorted(codes.items())), "tracebacks": tracebacks})


if __name__ == "__main__":
    main()
