"""A tiny recipe for fast tests: small network, few steps, few tasks."""

from pcmmeta.recipe import validate


def tiny_recipe(**overrides) -> dict:
    user = {
        "name": "tiny",
        "seed": 0,
        "task": {"shots": 5},
        "network": {"hidden": [8, 8], "time_steps": 12},
        "inner": {"pulse_threshold": 0.01},
        "train": {"iterations": 6, "meta_batch": 8, "chunk_tasks": 4, "checkpoint_every": 3, "log_every": 1, "warmup": 0, "learning_rate": 0.05},
        "eval": {"tasks": 20, "plot_tasks": 2},
    }
    for key, value in overrides.items():
        section, _, leaf = key.partition("__")
        if leaf:
            user.setdefault(section, {})[leaf] = value
        else:
            user[section] = value
    return validate(user)
