"""Recipes: the YAML that configures a meta-training run, validated up front.

`load_recipe(path)` returns a plain nested dict with every key filled in (defaults from
`SCHEMA`); any unknown key, wrong type or out-of-range value raises `UserInputError` naming the
file and the key path (`train.meta_batch`). docs/recipes.md lists every key.
"""

from __future__ import annotations

import copy
import difflib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .errors import UserInputError
from .maml import MODES
from .runs import read_yaml


@dataclass(frozen=True)
class Field:
    default: Any
    kind: str  # "int" | "float" | "str" | "choice" | "range" | "ints"
    help: str
    low: float | None = None  # inclusive lower bound
    high: float | None = None  # inclusive upper bound
    positive: bool = False  # strictly > 0
    choices: Sequence[str] = ()


SCHEMA: dict[str, Any] = {
    "name": Field("sine", "str", "run name; run directories are runs/<name>-<timestamp>/"),
    "seed": Field(0, "int", "PRNG seed of initialisation, task sampling and device noise", low=0),
    "device": Field("nandakumar2018", "str", "built-in device name or a device YAML (relative to the recipe)"),
    "mode": Field("pcm", "choice", "pcm | quantized | ideal | no-adapt", choices=MODES),
    "task": {
        "family": Field("sinusoid", "choice", "task family", choices=("sinusoid",)),
        "shots": Field(20, "int", "K: support points and query points per task", low=1),
        "amplitude": Field([0.1, 5.0], "range", "amplitude range [low, high]"),
        "phase": Field([0.0, math.pi], "range", "phase range [low, high], rad"),
        "x_range": Field([-5.0, 5.0], "range", "input range [low, high]"),
    },
    "network": {
        "hidden": Field([40, 40], "ints", "sizes of the two LIF layers"),
        "time_steps": Field(100, "int", "simulation steps per input", low=1),
        "dt": Field(1e-3, "float", "time step, s", positive=True),
        "tau_mem": Field(1e-2, "float", "membrane time constant, s", positive=True),
        "tau_out": Field(2e-2, "float", "readout time constant, s", positive=True),
        "threshold": Field(1.0, "float", "spike threshold", positive=True),
        "surrogate_beta": Field(10.0, "float", "β of the spike surrogate 1/(β|v−θ|+1)²", positive=True),
        "scale_in": Field(5.0, "float", "weight of a full-range pair, input layer", positive=True),
        "scale_hidden": Field(1.0, "float", "weight of a full-range pair, hidden layer", positive=True),
        "scale_out": Field(1.0, "float", "weight of a full-range pair, output layer", positive=True),
        "init_conductance": Field(3.0, "float", "µS around which pairs are initialised", positive=True),
    },
    "maml": {
        "inner_steps": Field(1, "int", "pulse rounds in the inner loop", low=1, high=10),
        "pulse_threshold": Field(0.02, "float", "|∂L/∂w| a device's weight must pass to be pulsed", low=0.0),
        "mask_surrogate_beta": Field(50.0, "float", "β of the threshold's surrogate gradient", positive=True),
        "programming_noise": Field(0.5, "float", "std of injected offline-programming noise, µS", low=0.0),
        "t_read": Field(100.0, "float", "read before the pulse, s after offline programming", low=0.0),
        "t_prog": Field(101.0, "float", "time of the pulse, s", low=0.0),
        "t_wait": Field(50.0, "float", "wait after the pulse before the query read, s", low=0.0),
        "quantized_bits": Field(2, "int", "quantized mode: pulse step g_max/2^bits", low=1, high=16),
        "ideal_lr": Field(0.3, "float", "ideal mode: inner SGD step size (0.3 beat 0.05 clearly, benchmarks/quality.py)", positive=True),
    },
    "train": {
        "iterations": Field(1500, "int", "meta-iterations", low=1),
        "meta_batch": Field(256, "int", "tasks per meta-iteration", low=1),
        "learning_rate": Field(3e-2, "float", "peak Adam learning rate (µS per step scale)", positive=True),
        "warmup": Field(50, "int", "linear warm-up iterations", low=0),
        "final_lr_fraction": Field(0.1, "float", "cosine decay ends at this fraction of the peak", low=0.0, high=1.0),
        "chunk_tasks": Field(16, "int", "tasks per gradient-accumulation chunk (memory and cache; not the result)", low=1),
        "checkpoint_every": Field(100, "int", "iterations between checkpoints", low=1),
        "log_every": Field(10, "int", "iterations between metrics.jsonl lines", low=1),
    },
    "eval": {
        "tasks": Field(200, "int", "held-out tasks of the final evaluation", low=1),
        "seed": Field(12345, "int", "seed of the held-out tasks (fixed across runs)", low=0),
        "plot_tasks": Field(4, "int", "tasks drawn in the evaluation PNG", low=0, high=16),
    },
}


def defaults(schema: dict = SCHEMA) -> dict:
    return {k: defaults(v) if isinstance(v, dict) else copy.deepcopy(v.default) for k, v in schema.items()}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check(field: Field, value: Any, where: str) -> Any:
    kind = field.kind
    if kind == "str":
        if not isinstance(value, str) or not value:
            raise UserInputError(f"{where}: must be a non-empty string, got {value!r}")
        return value
    if kind == "choice":
        if value not in field.choices:
            raise UserInputError(f"{where}: must be one of {', '.join(field.choices)}, got {value!r}")
        return value
    if kind == "range":
        if not (isinstance(value, list) and len(value) == 2 and all(_number(v) for v in value) and value[0] <= value[1]):
            raise UserInputError(f"{where}: must be [low, high] with low ≤ high, got {value!r}")
        return [float(v) for v in value]
    if kind == "ints":
        if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)):
            raise UserInputError(f"{where}: must be two integers ≥ 1, got {value!r}")
        return value
    if kind == "int":
        if not isinstance(value, int) or isinstance(value, bool):
            raise UserInputError(f"{where}: must be an integer, got {value!r}")
    elif kind == "float":
        if not _number(value):
            raise UserInputError(f"{where}: must be a finite number, got {value!r}")
        value = float(value)
    if field.positive and not value > 0:
        raise UserInputError(f"{where}: must be > 0, got {value!r}")
    if field.low is not None and value < field.low:
        raise UserInputError(f"{where}: must be ≥ {field.low:g}, got {value!r}")
    if field.high is not None and value > field.high:
        raise UserInputError(f"{where}: must be ≤ {field.high:g}, got {value!r}")
    return value


def _merge(schema: dict, user: Any, prefix: str, origin: str) -> dict:
    if not isinstance(user, dict):
        raise UserInputError(f"{origin}: '{prefix or 'recipe'}' must be a mapping")
    out = {}
    for key in user:
        if key not in schema:
            close = difflib.get_close_matches(str(key), list(schema), n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            raise UserInputError(f"{origin}: unknown key '{prefix}{key}'{hint}")
    for key, spec in schema.items():
        where = f"{prefix}{key}"
        if isinstance(spec, dict):
            out[key] = _merge(spec, user.get(key, {}), f"{where}.", origin)
        elif key in user:
            out[key] = _check(spec, user[key], f"{origin}: '{where}'")
        else:
            out[key] = copy.deepcopy(spec.default)
    return out


def validate(user: dict, origin: str = "recipe") -> dict:
    """A complete recipe from a partial one; raises `UserInputError` naming the key path."""
    recipe = _merge(SCHEMA, user if user is not None else {}, "", origin)
    m = recipe["maml"]
    if m["t_prog"] < m["t_read"]:
        raise UserInputError(f"{origin}: 'maml.t_prog' must be ≥ 'maml.t_read'")
    return recipe


def load_recipe(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{path}: no such recipe file")
    user = read_yaml(path)
    recipe = validate(user or {}, str(path))
    device = recipe["device"]
    if device.endswith((".yaml", ".yml")) and not Path(device).is_absolute():
        candidate = path.parent / device
        recipe["device"] = str(candidate if candidate.exists() else Path(device))
    return recipe
