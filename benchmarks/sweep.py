"""Sweep recipe keys over several seeds; held-out quality as mean ± s.e. across seeds.

Usage:
    python benchmarks/sweep.py --recipe recipes/sine.yaml \\
        --set inner.pulse_threshold=0.01,0.02,0.04 --set maml.tasks_per_chip=1,4,16 \\
        [--row "inner.rule=planned-pulse train.iterations=13000"] \\
        --seeds 0,1,2 [--iterations 400] [--grid] [--condition blind-pulse] [--runs-dir runs-sweep] [--out sweep.jsonl]
    python benchmarks/sweep.py --table sweep.jsonl more-seeds.jsonl   # earlier runs' table, together

Each `--set KEY=V1,V2,…` names a dotted recipe key and its values (each read as YAML, so
`network.hidden=[40,40]` works; a value holding commas needs its own `--set`). By default keys
vary one at a time around the recipe (the recipe's own values are the baseline row); `--grid`
runs every combination; each `--row` adds one configuration that changes several keys together (KEY=VALUE pairs separated by spaces, so a value may hold no space: `network.hidden=[40,40]`). Every configuration trains once per seed (the recipe's `seed`: weights,
tasks and device noise) and is evaluated on the recipe's fixed *validation* tasks
(`eval.validation_seed`; for images, the validation classes carved out of the training classes),
never on the test tasks whose figures the docs report: choose on the sweep, then report the
chosen recipe's own test evaluation (`meta-train`'s evaluation.json). Prints one JSON
line per run, then a table: the primary metric after adaptation, mean ± s.e. over seeds, its
difference from the first row (the recipe; with --grid, the first combination) and a verdict:
every configuration runs the same seeds, so the test is paired — per seed d = metric − first
row's metric, and "better"/"worse" when |mean d| > t(0.975, n − 1)·sd(d)/√n (Student's t, two
sided, 5 %), else "no difference"; fewer than 3 seeds give no verdict. A run that fails (NaN
loss, a recipe that does not fit) is a row marked failed; Ctrl-C prints the table so far. Adopt in
a recipe only what is "better". `--condition NAME` sweeps one of `results_table.py`'s conditions
of the recipe (its change applied first, e.g. `blind-pulse`: the same update as blind SET pulses),
for a key that condition needs of its own (given to `results_table.py` as `--set NAME:KEY=VALUE`).
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import yaml
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))  # results_table.py beside this script
from results_table import CONDITIONS, condition_recipe  # noqa: E402

from pcmmeta.errors import UserInputError
from pcmmeta.experiment.recipe import load_recipe
from pcmmeta.experiment.train import NaNLossError, build_experiment, evaluate, mean_sem, start_run, train


def parse_set(text: str) -> tuple[str, list]:
    """'a.b=1,2' → ('a.b', [1, 2]); each value parsed as YAML."""
    if "=" not in text:
        raise UserInputError(f"--set {text!r}: expected KEY=V1,V2,… (e.g. inner.pulse_threshold=0.01,0.02)")
    key, values = text.split("=", 1)
    if values.startswith("["):  # one list value, e.g. network.hidden=[40,40]
        return key, [yaml.safe_load(values)]
    return key, [yaml.safe_load(v) for v in values.split(",") if v != ""]


def parse_row(text: str) -> dict:
    """'a.b=1 c.d=x' → {'a.b': 1, 'c.d': 'x'}: one configuration changing several keys together."""
    row = {}
    for part in text.split():
        key, values = parse_set(part)
        if len(values) != 1:
            raise UserInputError(f"--row {text!r}: {key} needs exactly one value (a row is one configuration)")
        row[key] = values[0]
    if not row:
        raise UserInputError("--row: expected KEY=V [KEY2=V2 …]")
    return row


def configurations(sets: list[tuple[str, list]], grid: bool, rows: Sequence[dict] = ()) -> list[dict]:
    """The baseline ({}), then one key at a time, or every combination with `grid`; then each
    --row (several keys changed together)."""
    if grid:
        keys = [k for k, _ in sets]
        return [dict(zip(keys, combo)) for combo in itertools.product(*(v for _, v in sets))] + list(rows)
    return [{}] + [{key: v} for key, values in sets for v in values] + list(rows)


def label(config: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in config.items()) or "baseline (recipe)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default=str(Path(__file__).parent.parent / "recipes" / "sine-quick.yaml"))
    parser.add_argument("--set", action="append", default=[], dest="sets", metavar="KEY=V1,V2")
    parser.add_argument("--row", action="append", default=[], dest="rows", metavar="'KEY=V KEY2=V2'",
                        help="one configuration changing several keys together (e.g. a rule and its iterations)")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--iterations", type=int, default=None, help="override train.iterations")
    parser.add_argument("--grid", action="store_true")
    parser.add_argument("--condition", default=None, help="sweep one of results_table.py's conditions of the recipe (e.g. blind-pulse)")
    parser.add_argument("--runs-dir", default="runs-sweep")
    parser.add_argument("--out", default=None, help="also append the JSON lines to this file")
    parser.add_argument("--table", nargs="+", default=None, metavar="JSONL", help="train nothing: the table of earlier sweeps' --out files together")
    args = parser.parse_args()
    if args.table:
        try:
            rows, metric, higher_is_better, seeds = rows_from_lines(args.table)
        except (OSError, ValueError) as err:
            print(f"sweep.py: --table: {err}", file=sys.stderr)
            sys.exit(2)
        except KeyError as err:
            print(f"sweep.py: --table: a line lacks the key {err} (not a sweep.py --out file?)", file=sys.stderr)
            sys.exit(2)
        print_table(rows, metric, higher_is_better, seeds)
        return
    try:
        fixed = {} if args.iterations is None else {"train.iterations": args.iterations}
        if args.condition is not None and args.condition not in CONDITIONS:
            raise UserInputError(f"--condition: unknown condition {args.condition!r} (known: {', '.join(CONDITIONS)})")
        sets = [parse_set(s) for s in args.sets]
        seeds = [int(s) for s in args.seeds.split(",")]
        configs = configurations(sets, args.grid, [parse_row(r) for r in args.rows])
        recipes, distinct = {}, []
        for config in configs:  # validate everything before the first (long) run
            if args.condition is None:
                recipe = load_recipe(args.recipe, {**fixed, **config})
            else:  # results_table.py's condition first, then the configuration's keys
                recipe = condition_recipe(load_recipe(args.recipe, fixed), args.condition, config)
            same = next((c for c in distinct if recipes[label(c)] == recipe), None)
            if same is not None:  # e.g. a --set value that is the recipe's own: train it once
                print(f"sweep.py: {label(config)} is the same recipe as {label(same)}: trained once", file=sys.stderr)
                continue
            recipes[label(config)] = recipe
            distinct.append(config)
        configs = distinct
    except (UserInputError, ValueError, yaml.YAMLError) as err:
        print(f"sweep.py: {err}", file=sys.stderr)
        sys.exit(2)
    rows: dict[str, dict] = {}
    metric, higher_is_better = None, False
    try:
        for config in configs:
            name = label(config)
            rows[name] = {"after": {}, "wall": [], "failed": []}
            for seed in seeds:
                recipe = copy.deepcopy(recipes[name])
                recipe_name = recipe["name"]
                recipe["seed"] = seed
                recipe["name"] = f"sweep-{recipe_name}"
                run_dir = start_run(recipe, Path(args.runs_dir))
                t0 = time.perf_counter()
                try:
                    # no test evaluation: a sweep chooses, so it sees the validation split only
                    outcome = train(recipe, run_dir, evaluate_at_end=False)
                    ev = None if outcome.interrupted else evaluate(build_experiment(recipe), outcome.state.network, split="validation")
                except (NaNLossError, UserInputError) as err:
                    line = {"recipe": recipe_name, "config": config, "seed": seed, "run_dir": str(run_dir), "failed": str(err)}
                else:
                    if outcome.interrupted:
                        raise KeyboardInterrupt
                    metric, higher_is_better = ev.metric, ev.higher_is_better
                    line = {"recipe": recipe_name, "config": config, "seed": seed, "run_dir": str(run_dir), "wall_s": round(time.perf_counter() - t0, 1), "split": "validation",
                            "metric": metric, "higher_is_better": higher_is_better, "after": ev.after(), "sem_after": ev.metrics_sem[metric][-1], "before": ev.before(), "per_step": [c["mean"] for c in ev.curve()]}
                add_line(rows, line)
                print(json.dumps(line), flush=True)
                if args.out:
                    with open(args.out, "a") as f:
                        f.write(json.dumps(line) + "\n")
    except KeyboardInterrupt:
        print("interrupted: the table holds the runs finished so far", file=sys.stderr)
    print_table(rows, metric, higher_is_better, seeds)


def add_line(rows: dict[str, dict], line: dict, with_recipe: bool = False) -> None:
    """One run's JSON line into the table's rows (a row per configuration; per recipe and
    configuration with `with_recipe`, when the lines come from sweeps of different recipes —
    a line written before lines named their recipe joins the rows without a recipe name)."""
    name = label(line["config"])
    if with_recipe and line.get("recipe") is not None:
        name = f"{line['recipe']}: {name}"
    row = rows.setdefault(name, {"after": {}, "wall": [], "failed": []})
    if "failed" in line:
        row["failed"].append(line["seed"])
    else:
        seed = line["seed"]
        if seed in row["after"] and row["after"][seed] != line["after"]:
            # e.g. a copy of a recipe that kept its `name:` — two different runs under one row
            print(f"sweep.py: {name}, seed {seed}: a second line ({line['after']:.4f}) replaces {row['after'][seed]:.4f}", file=sys.stderr)
        row["after"][seed] = line["after"]
        row["wall"].append(line["wall_s"])


def rows_from_lines(paths: list[str]) -> tuple[dict[str, dict], str | None, bool, list[int]]:
    """The table's rows from --out files, in the order configurations first appear (put the file
    with the baseline first); a configuration and seed seen twice keeps its last line. Lines of
    sweeps over different recipes (their `recipe` names differ) stay apart: each row is then
    named by recipe and configuration, so two recipes' baselines are two rows. (Lines written
    before lines named their recipe count as the same recipe as any other lines: give a copy of
    a recipe its own `name:` before sweeping it.)"""
    lines = []
    for path in paths:
        for number, text in enumerate(Path(path).read_text().splitlines(), 1):
            try:
                lines.append(json.loads(text))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{number}: not a JSON line ({err.msg})") from None
    with_recipe = len({line["recipe"] for line in lines if line.get("recipe") is not None}) > 1
    rows: dict[str, dict] = {}
    splits = {line.get("split", "test") for line in lines if "failed" not in line}
    if len(splits) > 1:
        raise ValueError("the files mix validation lines with older lines evaluated on the test tasks: compare like with like")
    metric, higher_is_better, seeds = None, False, set()
    for line in lines:
        add_line(rows, line, with_recipe)
        seeds.add(line["seed"])
        if "failed" in line:
            continue
        metric = line["metric"]
        # lines written before the key existed: accuracy is the only higher-is-better metric
        higher_is_better = line.get("higher_is_better", metric == "accuracy")
    return rows, metric, higher_is_better, sorted(seeds)


def paired_verdict(values: dict[int, float], first: dict[int, float], higher_is_better: bool) -> str:
    """Paired two-sided t-test (5 %) of a row against the first row over their common seeds."""
    common = sorted(set(values) & set(first))
    if len(common) < 3:
        return f"({len(common)} seeds: none)"
    d = [values[s] - first[s] for s in common]
    mean, se = mean_sem(d)
    if mean == 0 or abs(mean) <= stats.t.ppf(0.975, len(d) - 1) * se:  # se = 0, mean ≠ 0: the same shift on every seed
        return "no difference"
    return "better" if (mean > 0) == higher_is_better else "worse"


def print_table(rows: dict[str, dict], metric: str | None, higher_is_better: bool, seeds: list[int]) -> None:
    if not rows or metric is None:
        print("no finished run")
        return
    first_name = next(iter(rows))
    first = rows[first_name]["after"]
    print(f"\n{metric} after adaptation on the validation tasks, mean ± s.e. over seeds {seeds}; verdict: paired t-test against the first row")
    print(f"{'configuration':<48} {'after':>17} {'Δ vs first row':>15} {'verdict':>16} {'wall s':>7}")
    for name, r in rows.items():
        values = list(r["after"].values())
        failed = f"  failed seeds {r['failed']}" if r["failed"] else ""
        if not values:
            print(f"{name[:48]:<48} {'failed':>17}{failed}")
            continue
        mean, se = mean_sem(values)
        common = sorted(set(r["after"]) & set(first))
        delta = sum(r["after"][s] - first[s] for s in common) / len(common) if common else float("nan")
        verdict = "" if name == first_name else paired_verdict(r["after"], first, higher_is_better)
        wall = sum(r["wall"]) / len(r["wall"])
        print(f"{name[:48]:<48} {mean:9.4f} ± {se:6.4f} {delta:+15.4f} {verdict:>16} {wall:7.0f}{failed}")

if __name__ == "__main__":
    main()
