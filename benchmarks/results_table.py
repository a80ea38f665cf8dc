"""One results table per system: software against the chip, on the test split, over training seeds.

Usage:
    python benchmarks/results_table.py --recipe recipes/ortner-glyphs-quick.yaml --seeds 0,1,2 \\
        [--conditions 32-bit,4-bit,chip,blind-pulse,no-adapt] [--set blind-pulse:inner.lr=0.3] \\
        [--runs-dir runs-results] [--out lines.jsonl]
    python benchmarks/results_table.py --table lines.jsonl [more.jsonl …]   # the table of earlier runs

The recipe is one of the `ortner-*` recipes (Ortner et al.'s setting: joshi2020, 4-bit offline
weights, `reprogram-sgd` or `eprop-lsg` with `update: reprogram`) or a recipe whose inner rule is
blind SET pulses (`blind-pulse`, `planned-pulse`, `quantized-sgd`: `sine-quick.yaml`). Each
condition meta-trains the recipe once per seed (the recipe's `seed`: weights, tasks and device
noise) with one change:

| condition | change to an `ortner-*` recipe | change to a blind-pulse recipe |
|---|---|---|
| `32-bit` | `mode: ideal` (32-bit software: float weights, unbounded, plain SGD in the inner loop) | the same |
| `4-bit` | `mode: quantized` (4-bit software: exact 4-bit weights, the rounded update, no device noise) | `mode: quantized` (the pulse rule on an ideal 4-bit device) |
| `chip` | none (the recipe's `pcm` mode: verified re-programming on the device model, its noise and drift) | `reprogram-sgd` with the 32-bit condition's steps and step size (`inner.ideal_lr`; `inner.lr` for `quantized-sgd`) |
| `blind-pulse` | the same update as blind SET pulses, no verify (`quantized-sgd`; `eprop-lsg` with `update: pulses`) | none |
| `no-adapt` | `mode: no-adapt` (the chip without the update: what adaptation buys) | the same |

and reports its own end-of-training evaluation on the untouched test split (`eval.seed`, the
test classes). Prints a JSON line per run (condition, seed, the primary metric before and after
adaptation, the family's baselines on the same tasks), then the table: per condition the metric
before and after adaptation, mean ± s.e. over seeds (each seed: the mean over the test tasks),
and the baselines (raw-pixel nearest neighbour and chance for images, not moving for the arm).
Hyperparameters are not chosen here: this script only reports. A key a condition needs of its
own (the blind-pulse condition's inner lr: a blind pulse is not a verified step) is chosen on the
validation split with `sweep.py --condition NAME` and given here as `--set NAME:KEY=VALUE`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import yaml

from pcmmeta.errors import UserInputError
from pcmmeta.experiment.recipe import load_recipe, validate, with_overrides
from pcmmeta.experiment.train import mean_sem, start_run, train

# inner rules whose update is blind SET pulses (the recipe itself is then the blind-pulse condition)
BLIND_PULSE_RULES = ("blind-pulse", "planned-pulse", "quantized-sgd")
CONDITIONS = ("32-bit", "4-bit", "chip", "blind-pulse", "no-adapt")
LABELS = {
    "32-bit": "32-bit software (ideal)",
    "4-bit": "4-bit software (quantized)",
    "chip": "chip, verified re-programming (pcm)",
    "blind-pulse": "chip, blind SET pulses (pcm)",
    "no-adapt": "chip, no adaptation (no-adapt)",
}


def condition_recipe(recipe: dict, condition: str, overrides: dict | None = None) -> dict:
    """The recipe (validated) with the one change a condition makes, then `overrides` (dotted
    keys: a key chosen for this condition on the validation split, e.g. its inner lr)."""
    out = json.loads(json.dumps(recipe))
    out["name"] = f"{recipe['name']}-{condition}"
    inner = out["inner"]
    if condition == "32-bit":
        out["mode"] = "ideal"
    elif condition == "4-bit":
        out["mode"] = "quantized"
    elif condition == "no-adapt":
        out["mode"] = "no-adapt"
    elif condition == "blind-pulse":
        if inner["rule"] == "reprogram-sgd":
            out["inner"] = {"rule": "quantized-sgd", "steps": inner["steps"], "lr": inner["lr"]}
        elif inner["rule"] == "eprop-lsg":
            inner["update"] = "pulses"
        elif inner["rule"] not in BLIND_PULSE_RULES:
            raise UserInputError(f"inner.rule {inner['rule']!r}: no blind-pulse condition for it")
    elif condition == "chip":
        if inner["rule"] in BLIND_PULSE_RULES:
            # the 32-bit condition's SGD (its steps, its float step size) as verified re-programming
            out["inner"] = {"rule": "reprogram-sgd", "steps": inner["steps"], "lr": inner.get("ideal_lr", inner.get("lr"))}
    else:
        raise UserInputError(f"--conditions: unknown condition {condition!r} (known: {', '.join(CONDITIONS)})")
    return validate(with_overrides(out, overrides or {}), f"{recipe['name']} ({condition})")


def parse_condition_sets(texts: list[str]) -> dict[str, dict]:
    """['blind-pulse:inner.lr=0.3', …] → {'blind-pulse': {'inner.lr': 0.3}} (values read as YAML)."""
    out: dict[str, dict] = {}
    for text in texts:
        condition, sep, assignment = text.partition(":")
        key, eq, value = assignment.partition("=")
        if not (sep and eq and key):
            raise UserInputError(f"--set {text!r}: expected CONDITION:KEY=VALUE (e.g. blind-pulse:inner.lr=0.3)")
        if condition not in CONDITIONS:
            raise UserInputError(f"--set {text!r}: unknown condition {condition!r} (known: {', '.join(CONDITIONS)})")
        out.setdefault(condition, {})[key] = yaml.safe_load(value)
    return out


def fmt(mean: float, sem: float) -> str:
    """mean ± s.e., the s.e. to 2 significant digits and the mean to the same decimal."""
    if not sem > 1e-9 * max(abs(mean), 1.0):  # one seed, or float noise of equal values
        return f"{mean:.4f} ± 0"
    from math import floor, log10

    decimals = max(0, 1 - int(floor(log10(sem))))
    return f"{mean:.{decimals}f} ± {sem:.{decimals}f}"


def print_table(lines: list[dict]) -> None:
    done = [line for line in lines if "failed" not in line]
    if not done:
        print("no finished run")
        return
    metric = done[0]["metric"]
    seeds = sorted({line["seed"] for line in done})
    print(f"\n{done[0]['recipe']}: {metric} on the test split, mean ± s.e. over training seeds {seeds}")
    print("| condition | seeds | before adaptation | after adaptation |\n|---|---|---|---|")
    for condition in CONDITIONS:
        rows = [line for line in done if line["condition"] == condition]
        if rows:
            before, after = mean_sem([r["before"] for r in rows]), mean_sem([r["after"] for r in rows])
            print(f"| {LABELS[condition]} | {len(rows)} | {fmt(*before)} | {fmt(*after)} |")
    for name in sorted({k for line in done for k in line["baselines"]}):
        values = [line["baselines"][name] for line in done if name in line["baselines"]]
        print(f"baseline {name}: {fmt(*mean_sem(values))} (the same test tasks)")
    failed = [f"{line['condition']} seed {line['seed']}" for line in lines if "failed" in line]
    if failed:
        print("failed:", ", ".join(failed))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--conditions", default=",".join(CONDITIONS))
    parser.add_argument("--iterations", type=int, default=None, help="override train.iterations (say so beside any figure)")
    parser.add_argument("--set", action="append", default=[], dest="sets", metavar="CONDITION:KEY=VALUE",
                        help="a key of one condition, chosen on the validation split (sweep.py --condition); repeatable")
    parser.add_argument("--runs-dir", default="runs-results")
    parser.add_argument("--out", default=None, help="also append the JSON lines to this file")
    parser.add_argument("--table", nargs="+", default=None, metavar="JSONL", help="train nothing: the table of earlier runs' --out files")
    args = parser.parse_args()
    if args.table:
        try:
            lines = [json.loads(text) for path in args.table for text in Path(path).read_text().splitlines() if text.strip()]
        except (OSError, ValueError) as err:
            print(f"results_table.py: --table: {err}", file=sys.stderr)
            sys.exit(2)
        print_table(lines)
        return
    try:
        if not args.recipe:
            raise UserInputError("--recipe is needed (or --table)")
        base = load_recipe(args.recipe, {} if args.iterations is None else {"train.iterations": args.iterations})
        seeds = [int(s) for s in args.seeds.split(",")]
        sets = parse_condition_sets(args.sets)
        recipes = {c: condition_recipe(base, c, sets.get(c)) for c in args.conditions.split(",")}
    except (UserInputError, ValueError, yaml.YAMLError) as err:
        print(f"results_table.py: {err}", file=sys.stderr)
        sys.exit(2)
    lines = []
    try:
        for seed in seeds:
            for condition, recipe in recipes.items():
                recipe = {**recipe, "seed": seed}
                run_dir = start_run(recipe, Path(args.runs_dir))
                t0 = time.perf_counter()
                line = {"recipe": base["name"], "condition": condition, "seed": seed, "run_dir": str(run_dir)}
                try:
                    outcome = train(recipe, run_dir)
                except UserInputError as err:
                    line["failed"] = str(err)
                else:
                    if outcome.interrupted:
                        raise KeyboardInterrupt
                    ev = outcome.evaluation
                    line.update({
                        "wall_s": round(time.perf_counter() - t0, 1), "iterations": recipe["train"]["iterations"], "split": "test",
                        "metric": ev.metric, "n_tasks": ev.n_tasks, "before": ev.before(), "after": ev.after(),
                        "per_step": [round(c["mean"], 5) for c in ev.curve()], "pulses_per_task": ev.pulses_per_task,
                        "baselines": ev.baselines,
                    })
                lines.append(line)
                print(json.dumps(line), flush=True)
                if args.out:
                    with open(args.out, "a") as f:
                        f.write(json.dumps(line) + "\n")
    except KeyboardInterrupt:
        print("interrupted: the table holds the runs finished so far", file=sys.stderr)
    print_table(lines)


if __name__ == "__main__":
    main()
