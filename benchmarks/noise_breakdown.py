"""Where a trained run's accuracy (or MSE) goes: the same network and held-out tasks evaluated
with each non-ideality of the chip switched off in turn.

Usage: python benchmarks/noise_breakdown.py RUN_DIR [--tasks 200] [--split validation|test] [--rows NAME,…]
Rows: as trained (the recipe's mode); without offline-programming noise; without read noise and
drift (device with read_std = 0 and ν = 0); read noise alone off; drift alone off; on `joshi2020`, the
read noise of Ortner et al.'s public code (its Q_s is a power law of G in µS where aihwkit's is
of G/g_max: g_max^0.65 ≈ 8× smaller at 25 µS); both off; SET increments without their spread (each
pulse gives its mean increment); no noise at all; the same inner rule on an ideal 4-bit
device (`quantized` mode, no noise); float SGD (`ideal` mode); and one more inner step (pulse
round) than the run was trained for; for a classifier (`cnn`), the trained network with its head's
starting point replaced by its mean over classes (every class the same logit before adaptation:
what `network.shared_head_init` trains for) (`--rows`: only the rows whose names start with one of
these, e.g. `--rows "as trained,no read"`). On the run's validation tasks unless `--split test`. Prints the family's metric after
0 … S inner steps (mean ± s.e.) per row, one JSON line each; for a classifier first the head's
learned start, G⁺ − G⁻ (µS) per class, its least and greatest over the features and bias row.
"""

import argparse
import dataclasses
import json
from pathlib import Path

from pcmmeta.core.modes import Ideal, Quantized
from pcmmeta.experiment.train import evaluate, load_run

#: Per device family: the parameters that switch off read noise and drift.
NO_READ_NOISE = {
    "nandakumar2018": {"read_std_slope": 0.0, "read_std_intercept": 0.0},
    "joshi2020": {"read_noise_q": 0.0},
}
NO_DRIFT = {
    "nandakumar2018": {"drift_nu_mean": 0.0, "drift_nu_std": 0.0},
    "joshi2020": {"nu_mean_min": 0.0, "nu_mean_max": 0.0, "nu_std_min": 0.0, "nu_std_max": 0.0},
}
QUIET = {family: NO_READ_NOISE[family] | NO_DRIFT[family] for family in NO_READ_NOISE}
#: Per device family: the parameters that make its own offline programming exact (joshi2020's
#: σ_p; nandakumar2018 programs exactly and takes `maml.programming_noise` only).
EXACT_PROGRAMMING = {"joshi2020": {"prog_noise_c0": 0.0, "prog_noise_c1": 0.0, "prog_noise_c2": 0.0}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir")
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--rows", default="", help="only the rows whose names start with one of these (comma-separated)")
    parser.add_argument("--split", choices=("validation", "test"), default="validation",
                        help="held-out split (default validation: what choices are made on; test only for reported figures)")
    args = parser.parse_args()
    exp, state = load_run(Path(args.run_dir))
    meta = exp.meta
    family = meta.device.family
    quiet = dataclasses.replace(meta.device, **QUIET[family])
    # SET pulses that always give their mean increment (the stochastic spread removed).
    no_set_spread = {k: 0.0 for k in ("set_std_slope", "set_std_intercept", "set_std_history") if hasattr(meta.device, k)}
    steady = dataclasses.replace(meta.device, **no_set_spread)
    exact_programming = EXACT_PROGRAMMING.get(meta.device.family, {})
    exact = dataclasses.replace(meta.device, **exact_programming)
    quiet_exact = dataclasses.replace(quiet, **exact_programming)
    silent = dataclasses.replace(quiet_exact, **no_set_spread)
    variants = {
        "as trained": meta,
        "no programming noise (injected and the family's own)": dataclasses.replace(meta, programming_noise=0.0, device=exact),
        "no read noise, no drift": dataclasses.replace(meta, device=quiet),
        "no read noise": dataclasses.replace(meta, device=dataclasses.replace(meta.device, **NO_READ_NOISE[family])),
        "no drift": dataclasses.replace(meta, device=dataclasses.replace(meta.device, **NO_DRIFT[family])),
        "neither": dataclasses.replace(meta, device=quiet_exact, programming_noise=0.0),
        "no SET-increment noise": dataclasses.replace(meta, device=steady),
        "no noise at all (SET, read, drift, programming)": dataclasses.replace(meta, device=silent, programming_noise=0.0),
        "ideal 4-bit device (quantized mode)": dataclasses.replace(meta, mode=Quantized(bits=4, quantize_weights=True)),
        "float SGD (ideal mode)": dataclasses.replace(meta, mode=Ideal()),
    }
    if family == "joshi2020":
        # Ortner et al.'s code computes Q_s = 0.0088 / G^0.65 with G in µS (capped at 0.2); aihwkit,
        # and joshi2020, with G/g_max. The same law on G/g_max takes Q = 0.0088 · g_max^-0.65.
        device = meta.device
        ortner_q = device.read_noise_q * device.g_max ** -device.read_noise_exponent
        variants["read noise of Ortner et al.'s code"] = dataclasses.replace(
            meta, device=dataclasses.replace(device, read_noise_q=ortner_q)
        )
    # one more inner step (a pulse round for the pulse rules) than the network was meta-trained
    # for, on the same schedule (`with_clock` gives the rule the clock's step count)
    more = dataclasses.replace(meta.clock, steps=meta.clock.steps + 1)
    variants[f"as trained, {more.steps} inner steps"] = meta.with_clock(more)
    networks = {name: state.network for name in variants}
    if exp.network.kind == "cnn":
        head = state.network.layers["out"]  # (2, features + 1, ways)
        difference = head[0] - head[1]  # G⁺ − G⁻, µS, per feature (and bias row) and class
        print(json.dumps({"head_start_uS": "G+ - G- per class over the features and bias row",
                          "min": [round(float(v), 2) for v in difference.min(axis=0)],
                          "max": [round(float(v), 2) for v in difference.max(axis=0)]}), flush=True)
        # the network's own tying: programmed with its head's class mean (`offline_layers`)
        variants["head started at its class mean"] = meta
        networks["head started at its class mean"] = dataclasses.replace(state.network, shared_head_init=True)
    wanted = [r.strip() for r in args.rows.split(",") if r.strip()]
    for name, variant in variants.items():
        if wanted and not any(name.startswith(w) for w in wanted):
            continue
        ev = evaluate(dataclasses.replace(exp, meta=variant), networks[name], n_tasks=args.tasks, split=args.split)
        m = ev.metric
        print(json.dumps({"variant": name, "metric": m, "per_step": [round(v, 4) for v in ev.metrics[m]],
                          "sem_after": round(ev.metrics_sem[m][-1], 4), "pulses_per_task": round(ev.pulses_per_task, 1)}), flush=True)


if __name__ == "__main__":
    main()
