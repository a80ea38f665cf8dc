"""Which XLA programs a `pcmmeta` command compiles, how long each takes, and where it is called.

Usage: python benchmarks/startup_compiles.py [--all] [--json] -- PCMMETA_ARGS...
  e.g. python benchmarks/startup_compiles.py -- meta-train recipes/sine-quick.yaml
       python benchmarks/startup_compiles.py -- drift-eval --hours 1,24

Runs the command for real, in this process (it writes what it writes: a run directory, a
deployed array…), with JAX's compile log on and the compilation cache off
(`PCMMETA_COMPILE_CACHE=off`, and a `JAX_COMPILATION_CACHE_DIR` of the environment unset: every
program is compiled, as on a first start). Prints each
program compiled in 0.1 s or more, and the small ones (under 0.1 s) as a count and a total —
each line of JAX evaluated op by op outside `jit` compiles such a program, on every start: they
are too quick for the compilation cache to keep. `--all` lists the small ones too, with the
pcmmeta lines that called them (the innermost three).
"""

import argparse
import json
import logging
import os
import sys
import traceback

SMALL_S = 0.1


class CompileLog(logging.Handler):
    """Collects JAX's "Finished XLA compilation of NAME in T sec" records with their call sites."""

    def __init__(self):
        super().__init__()
        self.programs: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if not message.startswith("Finished XLA compilation of"):
            return
        words = message.split()
        frames = [f for f in traceback.extract_stack() if f"{os.sep}pcmmeta{os.sep}" in f.filename and "site-packages" not in f.filename]
        where = " <- ".join(f"{os.path.basename(f.filename)}:{f.lineno}:{f.name}" for f in frames[::-1][:3])
        self.programs.append({"program": words[4], "seconds": float(words[-2]), "called_from": where})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="list the small programs too")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of lines")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the pcmmeta command's arguments")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the pcmmeta command after --, e.g. -- meta-train recipes/sine-quick.yaml")
    os.environ["PCMMETA_COMPILE_CACHE"] = "off"
    os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)
    import jax

    jax.config.update("jax_log_compiles", True)
    log = CompileLog()
    logging.getLogger("jax").addHandler(log)
    from pcmmeta.cli.app import app

    sys.argv = ["pcmmeta", *command]
    stdout = sys.stdout
    sys.stdout = open(os.devnull, "w")  # the command's own output is not what is measured
    try:
        app()
    except SystemExit as e:
        if e.code not in (0, None):
            sys.stdout = stdout
            sys.exit(f"pcmmeta {' '.join(command)} exited with {e.code}")
    finally:
        sys.stdout = stdout
    small = [p for p in log.programs if p["seconds"] < SMALL_S]
    large = [p for p in log.programs if p["seconds"] >= SMALL_S]
    summary = {
        "command": " ".join(command),
        "programs": len(log.programs),
        "compile_s": round(sum(p["seconds"] for p in log.programs), 2),
        "small_programs": len(small),
        "small_compile_s": round(sum(p["seconds"] for p in small), 2),
        "large": [{**p, "seconds": round(p["seconds"], 2)} for p in large],
    }
    if args.all:
        summary["small"] = [{**p, "seconds": round(p["seconds"], 3)} for p in small]
    if args.json:
        print(json.dumps(summary))
        return
    print(f"pcmmeta {summary['command']}: {summary['programs']} programs compiled in {summary['compile_s']} s")
    for p in large:
        print(f"  {p['seconds']:6.2f} s  {p['program']:28s} {p['called_from']}")
    print(f"  {summary['small_compile_s']:6.2f} s  {len(small)} programs under {SMALL_S} s each")
    for p in small if args.all else []:
        print(f"  {p['seconds']:6.3f} s  {p['program']:28s} {p['called_from']}")


if __name__ == "__main__":
    main()
