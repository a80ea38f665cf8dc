"""Run a benchmark script of two revisions in turn, in one run (the machine is shared: compare
ratios within one run, never absolute times across runs).

Usage: python benchmarks/compare_revisions.py BEFORE [--rounds 2] [--this-script] -- SCRIPT [ARGS …]
    e.g. python benchmarks/compare_revisions.py 1f36c3e --rounds 2 -- benchmarks/device_throughput.py 1000000 20 3

BEFORE is a git revision, checked out into a temporary worktree; the other side is the working
tree. Each round runs BEFORE's copy of SCRIPT (the working tree's with --this-script) with
BEFORE's package, then the working tree's with the working tree's (alternating, so slow drifts of the machine hit both alike), and
prints every output line prefixed with its side and round.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_side(tree: Path, script: Path, args: list[str]) -> str:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    proc = subprocess.run([sys.executable, str(script), *args], cwd=tree, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{script} on {tree} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--this-script", action="store_true", help="run the working tree's copy of SCRIPT on both sides"
    )
    argv = sys.argv[1:]
    if "--" not in argv and ("-h" in argv or "--help" in argv):
        parser.print_help()
        return
    if "--" not in argv:
        parser.error("give the script to run after --")
    split = argv.index("--")
    opts = parser.parse_args(argv[:split])
    command = argv[split + 1 :]
    if not command:
        parser.error("give the script to run after --")
    script, args = command[0], command[1:]
    with tempfile.TemporaryDirectory(prefix="pcmmeta-before-") as tmp:
        before = Path(tmp) / "tree"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(before), opts.before], cwd=ROOT, check=True, capture_output=True
        )
        try:
            for r in range(opts.rounds):
                for label, tree in ((f"before {opts.before}", before), ("after", ROOT)):
                    copy = (ROOT if opts.this_script else tree) / script
                    for line in run_side(tree, copy, args).splitlines():
                        print(f"[{label}, round {r + 1}] {line}", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(before)], cwd=ROOT, check=False)


if __name__ == "__main__":
    main()
