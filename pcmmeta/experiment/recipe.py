"""Recipes: the YAML that configures a meta-training run, validated up front.

`load_recipe(path)` returns a plain nested dict with every key filled in (defaults from the
schema); any unknown key, wrong type or out-of-range value raises `UserInputError` naming the
file and the key path (`train.meta_batch`). Three sections are plug-in sections: their keys
depend on the plug-in the section names — `network.kind`, `task.family`, `inner.rule` — and each
plug-in declares them (`SCHEMA`). `pcmmeta.experiment.train.build_experiment` turns the validated dict into
typed objects once. docs/recipes.md lists every key.
"""

from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import Any

from pcmmeta.core.fields import MAX_TASKS, Field, check
from pcmmeta.core.inner import INNER_RULES
from pcmmeta.core.modes import MODES
from pcmmeta.core.networks import NETWORKS
from pcmmeta.core.tasks import TASK_FAMILIES
from pcmmeta.errors import UserInputError, safe_text, short_repr
from pcmmeta.io.runs import read_yaml

#: Plug-in sections: section → (the key naming the plug-in, registry, default plug-in).
PLUGIN_SECTIONS: dict[str, tuple[str, dict, str]] = {
    "network": ("kind", NETWORKS, "lif"),
    "task": ("family", TASK_FAMILIES, "sinusoid"),
    "inner": ("rule", INNER_RULES, "blind-pulse"),
}

SCHEMA: dict[str, Any] = {
    "name": Field("sine", "name", "run name; run directories are runs/<name>-<timestamp>/ (letters, digits, _ . + -)"),
    "seed": Field(0, "seed", "PRNG seed of initialisation, task sampling and device noise (0 … 2^64−1)"),
    "device": Field("nandakumar2018", "str", "built-in device name or a device YAML (relative to the recipe)"),
    "mode": Field("pcm", "choice", "pcm | quantized | ideal | no-adapt", choices=tuple(MODES)),
    "network": {},  # plug-in section
    "task": {},  # plug-in section
    "inner": {},  # plug-in section
    "maml": {
        "programming_noise": Field(0.5, "float", "std of injected offline-programming noise, µS", low=0.0),
        "t_read": Field(100.0, "float", "read before the first inner step, s after offline programming", low=0.0),
        "t_prog": Field(101.0, "float", "time of the first inner step's pulses, s", low=0.0),
        "t_wait": Field(50.0, "float", "wait after the last pulses before the query read, s", low=0.0),
        "quantized_bits": Field(
            2,
            "int",
            "quantized mode: 2^bits levels spanning [g_min, g_max]; a pulse is one level step (g_max − g_min)/(2^bits − 1)",
            low=1,
            high=16,
        ),
        "quantize_weights": Field(
            False,
            "bool",
            "quantized, pcm and no-adapt modes: offline conductances on the 2^quantized_bits levels (a b-bit model; on the chip, programmed from there)",
        ),
        "tasks_per_chip": Field(
            1,
            "int",
            "meta-training: tasks sharing one programmed chip and its body reads (1: a chip per task; must divide train.meta_batch)",
            low=1,
        ),
    },
    "train": {
        "iterations": Field(1500, "int", "meta-iterations", low=1),
        "meta_batch": Field(256, "int", "tasks per meta-iteration", low=1, high=MAX_TASKS),
        "learning_rate": Field(3e-2, "float", "peak Adam learning rate (µS per step scale)", positive=True),
        "offchip_learning_rate": Field(
            1.5e-3,
            "float",
            "peak Adam learning rate of off-chip float parameters (the arm's learning-signal generator; Ortner: 1.5e-3)",
            positive=True,
        ),
        "warmup": Field(50, "int", "linear warm-up iterations", low=0),
        "final_lr_fraction": Field(0.1, "float", "cosine decay ends at this fraction of the peak", low=0.0, high=1.0),
        "chunk_tasks": Field(
            16,
            "int",
            "tasks per gradient-accumulation chunk (memory and speed; the result only through float rounding)",
            low=1,
        ),
        "checkpoint_every": Field(100, "int", "iterations between checkpoints", low=1),
        "log_every": Field(10, "int", "iterations between metrics.jsonl lines", low=1),
    },
    "eval": {
        "tasks": Field(200, "int", "held-out tasks of the final evaluation", low=1, high=MAX_TASKS),
        "seed": Field(12345, "seed", "seed of the test tasks: the figures reported (fixed across runs; 0 … 2^64−1)"),
        "validation_seed": Field(
            54321,
            "seed",
            "seed of the validation tasks: what hyperparameters are chosen on (must differ from eval.seed)",
        ),
        "plot_tasks": Field(4, "int", "tasks drawn in the evaluation PNG", low=0, high=16),
    },
}


def plugin_schema(section: str, name: str) -> dict[str, Field]:
    key, registry, _ = PLUGIN_SECTIONS[section]
    return {key: Field(name, "choice", f"{section} plug-in", choices=tuple(registry)), **registry[name].schema()}


def all_keys() -> list[str]:
    """Every key any recipe can hold, as dotted paths (for docs and their test)."""
    out = []

    def walk(schema, prefix):
        for k, spec in schema.items():
            if k in PLUGIN_SECTIONS and prefix == "":
                key, registry, _ = PLUGIN_SECTIONS[k]
                for name in registry:
                    walk(plugin_schema(k, name), f"{k}.")
            elif isinstance(spec, dict):
                walk(spec, f"{prefix}{k}.")
            else:
                out.append(f"{prefix}{k}")

    walk(SCHEMA, "")
    return sorted(set(out))


def _merge(schema: dict, user: Any, prefix: str, origin: str) -> dict:
    if not isinstance(user, dict):
        raise UserInputError(f"{origin}: '{prefix or 'recipe'}' must be a mapping")
    for key in user:
        if key not in schema:
            close = difflib.get_close_matches(str(key)[:100], [str(k) for k in schema], n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            raise UserInputError(f"{origin}: unknown key '{prefix}{safe_text(str(key), 80)}'{hint}")
    out = {}
    for key, spec in schema.items():
        where = f"{prefix}{key}"
        if key in PLUGIN_SECTIONS and prefix == "":
            out[key] = _merge_plugin(key, user.get(key, {}), origin)
        elif isinstance(spec, dict):
            out[key] = _merge(spec, user.get(key, {}), f"{where}.", origin)
        elif key in user:
            out[key] = check(spec, user[key], f"{origin}: '{where}'")
        else:
            out[key] = copy.deepcopy(spec.default)
    return out


def _merge_plugin(section: str, user: Any, origin: str) -> dict:
    key, registry, default = PLUGIN_SECTIONS[section]
    if not isinstance(user, dict):
        raise UserInputError(f"{origin}: '{section}.' must be a mapping")
    name = user.get(key, default)
    if name not in registry:
        raise UserInputError(
            f"{origin}: '{section}.{key}': must be one of {', '.join(registry)}, got {short_repr(name)}"
        )
    return _merge(plugin_schema(section, name), user, f"{section}.", origin)


def validate(user: dict | None, origin: str = "recipe") -> dict:
    """A complete recipe from a partial one; raises `UserInputError` naming the key path."""
    recipe = _merge(SCHEMA, user if user is not None else {}, "", origin)
    TASK_FAMILIES[recipe["task"]["family"]].check_section(recipe["task"], origin)
    m = recipe["maml"]
    if m["t_prog"] < m["t_read"]:
        raise UserInputError(f"{origin}: 'maml.t_prog' must be ≥ 'maml.t_read'")
    if recipe["eval"]["validation_seed"] == recipe["eval"]["seed"]:
        raise UserInputError(
            f"{origin}: 'eval.validation_seed' must differ from 'eval.seed' (validation and test tasks must not be the same tasks)"
        )
    if recipe["train"]["meta_batch"] % m["tasks_per_chip"]:
        raise UserInputError(
            f"{origin}: 'maml.tasks_per_chip' ({m['tasks_per_chip']}) must divide 'train.meta_batch' ({recipe['train']['meta_batch']})"
        )
    return recipe


def with_overrides(user: dict, values: dict) -> dict:
    """A copy of a user's (unvalidated) recipe with dotted keys set: {'inner.rule': 'x'}.

    Applied before validation, so that a changed plug-in (`inner.rule`, `network.kind`, …) gets
    its own defaults rather than the keys of the one it replaces."""
    out = copy.deepcopy(user)
    for dotted, value in values.items():
        node = out
        *path, last = dotted.split(".")
        for part in path:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserInputError(f"'{dotted}': '{part}' is not a section")
        node[last] = value
    return out


def load_recipe(path: str | Path, overrides: dict | None = None) -> dict:
    """A validated recipe from a YAML file, with dotted keys replaced by `overrides` first (see
    `with_overrides`); a relative device or data path is looked up beside the recipe first, then
    in the current folder."""
    path = Path(path)
    user = read_yaml(path)
    if not user:  # an empty file would otherwise train every default (a 256-task meta-batch) unasked
        raise UserInputError(
            f"{path}: empty recipe; start from one in recipes/ (e.g. recipes/sine-quick.yaml, keys in docs/recipes.md)"
        )
    origin = str(path)
    if overrides:
        user = with_overrides(user, overrides)
        origin += " with " + ", ".join(f"{k}={safe_text(str(v), 40)}" for k, v in overrides.items())
    recipe = validate(user, origin)
    device = recipe["device"]
    if device.endswith((".yaml", ".yml")):
        recipe["device"] = _beside(path, device)
    for key in ("data", "eval_data"):
        if recipe["task"].get(key):
            recipe["task"][key] = _beside(path, recipe["task"][key])
    return recipe


def load_run_recipe(run_dir: str | Path) -> dict:
    """The validated recipe a run directory was started with (`<run>/recipe.yaml`); a damaged
    one is a `UserInputError` naming the file and what to do."""
    path = Path(run_dir) / "recipe.yaml"
    try:
        user = read_yaml(path)
        if not isinstance(user, dict):
            raise UserInputError(f"{path}: not a recipe (a YAML mapping)")
        return validate(user, str(path))
    except UserInputError as err:
        raise UserInputError(
            f"{err}; the run's recipe is damaged: restore it, or train again with `pcmmeta meta-train RECIPE`"
        ) from None


def _beside(recipe_path: Path, value: str) -> str:
    """A relative path beside the recipe if it exists there, else as given; made absolute when
    it exists, so the run's recipe.yaml works from any folder later."""
    candidate = Path(value)
    if not candidate.is_absolute() and (recipe_path.parent / value).exists():
        candidate = recipe_path.parent / value
    return str(candidate.resolve()) if candidate.exists() else value


def keys_table() -> str:
    """Markdown table of every key (docs/recipes.md is regenerated from it:
    `python -c "from pcmmeta.experiment.recipe import keys_table; print(keys_table())"`)."""

    def fmt(v):
        return "`" + (str(v).lower() if isinstance(v, bool) else str(v)) + "`"

    lines = ["| key | default | meaning |", "|---|---|---|"]

    def rows(schema, prefix, note=""):
        for k, spec in schema.items():
            if k in PLUGIN_SECTIONS and prefix == "":
                key, registry, default = PLUGIN_SECTIONS[k]
                lines.append(f"| `{k}.{key}` | `{default}` | {k} plug-in: {', '.join(registry)} |")
                for name, plugin in registry.items():
                    rows(plugin.schema(), f"{k}.", f" ({key} `{name}`)")
            elif isinstance(spec, dict):
                rows(spec, f"{prefix}{k}.", note)
            else:
                lines.append(f"| `{prefix}{k}` | {fmt(spec.default)} | {spec.help.replace('|', '/')}{note} |")

    rows(SCHEMA, "")
    return "\n".join(lines)
