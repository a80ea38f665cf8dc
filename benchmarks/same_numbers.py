"""Two meta-iterations (meta-batch 4, chunks of 2) and a 4-task held-out evaluation of shipped
recipes: the losses, a hash of the trained parameters and the metric, to compare two versions
of the code bitwise.

Usage: python benchmarks/same_numbers.py RECIPE_NAME [...]     (names in recipes/, no .yaml)
    python benchmarks/compare_revisions.py REV --this-script -- benchmarks/same_numbers.py sine-quick arm-quick
(it imports the package by its layout before or after the re-layout into sub-packages, so one
copy runs against either revision).
"""

import hashlib
import sys

import equinox as eqx
import jax
import numpy as np

try:
    from pcmmeta.experiment.recipe import load_recipe
    from pcmmeta.experiment.train import build_experiment, evaluate, init_state, make_optimizer, make_train_step
except ImportError:  # before the re-layout
    from pcmmeta.recipe import load_recipe
    from pcmmeta.train import build_experiment, evaluate, init_state, make_optimizer, make_train_step

for name in sys.argv[1:]:
    r = load_recipe(f"recipes/{name}.yaml", {"train.meta_batch": 4, "train.chunk_tasks": 2, "eval.tasks": 4})
    exp = build_experiment(r)
    opt = make_optimizer(exp.train)
    st = init_state(exp, opt)
    step = make_train_step(exp, opt, exp.train.meta_batch)
    losses = []
    for _ in range(2):
        st, loss, _ = step(st, exp.family)
        losses.append(float(loss))
    leaves = [np.asarray(x) for x in jax.tree.leaves(eqx.filter(st.network, eqx.is_array))]
    h = hashlib.sha256(b"".join(x.tobytes() for x in leaves)).hexdigest()[:16]
    ev = evaluate(exp, st.network).to_json()
    print(name, {"losses": losses, "params": h, "metric_after": ev[ev["metric"] + "_after"]}, flush=True)
