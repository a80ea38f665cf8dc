"""Peak memory of meta-training, estimated from a validated recipe before anything is allocated,
and the check that refuses a recipe too large for this machine (docs/recipes.md, "Memory").

The estimate sums what is alive at the peak:
- the runtime (Python, JAX, XLA and the compiled programs), measured;
- the meta-parameters with their gradients, Adam moments and checkpoint copies;
- the task family's data and one meta-batch of tasks;
- the larger of the activations of one gradient-accumulation chunk (`train.chunk_tasks` tasks,
  kept for the backward pass) and of one evaluation chunk (forward only): the network plug-in's
  `activation_bytes` — time steps × samples × hidden units for the LIF network, image maps for
  the CNN — plus each task's programmed chip (every device's state, noise and reads), times
  the network's `ACTIVATION_OVERHEAD` (XLA's temporaries, measured, with a margin).
Sizes come from `jax.eval_shape` (tracing only), so a recipe of absurd sizes is refused in a
second, before its network is initialised or its run directory created.

`PCMMETA_MEMORY_LIMIT` overrides the memory taken as available (`16G`, `500M`, a number of
bytes; `off` skips the check): for a machine whose limit the check cannot see, or an estimate a
user knows to be pessimistic.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import equinox as eqx
import jax

from .errors import UserInputError, safe_text

#: Python, JAX, XLA, matplotlib and the compiled training and evaluation programs: peak RSS of
#: `meta-train recipes/sine-quick.yaml` (817 MiB) less its activations (≈ 40 MiB), rounded up.
RUNTIME_BYTES = 800 * 2**20
#: Parameters, gradients, accumulated gradients, Adam's two moments, updates, checkpoint copies.
PARAMETER_COPIES = 8
#: Bytes per device and task of a programmed chip: the state (G_p, t_p, ν, n: 4 floats), the
#: programmed targets and their noise, two reads of the body: ≈ 8 floats; ≈ 12 with gradients.
CHIP_BYTES_PER_DEVICE = 32
CHIP_BYTES_PER_DEVICE_BACKWARD = 48
#: Tasks per evaluation call (`train.evaluate`).
EVAL_CHUNK = 50
ENV_LIMIT = "PCMMETA_MEMORY_LIMIT"


def fmt_bytes(n: float) -> str:
    """Binary units: 1 GB here is 2^30 bytes."""
    for unit, size in (("TB", 2**40), ("GB", 2**30), ("MB", 2**20)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n / 2**10:.3g} kB"


@dataclass
class MemoryEstimate:
    total: int  # bytes
    parts: dict[str, int]  # what → bytes
    dominant: str  # the largest part, with the recipe keys it grows with

    def describe(self) -> str:
        return f"{fmt_bytes(self.total)} ({self.dominant})"


def _tree_bytes(tree) -> int:
    """Bytes of the arrays (or traced shapes) in a pytree."""
    return sum(math.prod(a.shape) * a.dtype.itemsize for a in jax.tree.leaves(tree) if hasattr(a, "shape") and hasattr(a, "dtype"))


def estimate_training_memory(recipe: dict, family, device) -> MemoryEstimate:
    """Peak bytes of meta-training the validated `recipe` with this task family and device."""
    from .networks import NETWORKS

    section = recipe["network"]
    cls = NETWORKS[section["kind"]]
    train, evaluation = recipe["train"], recipe["eval"]
    batch = eqx.filter_eval_shape(lambda: family.sample(jax.random.key(0), 1))
    support, query = batch.x_support.shape[1], batch.x_query.shape[1]
    from .train import chunk_size

    chunk, _ = chunk_size(train["meta_batch"], train["chunk_tasks"], recipe["maml"]["tasks_per_chip"])
    eval_chunk = min(EVAL_CHUNK, evaluation["tasks"])
    net = eqx.filter_eval_shape(lambda: cls.init(jax.random.key(0), section, family, device))
    params = _tree_bytes(net)
    n_devices = sum(math.prod(g.shape) for g in net.layers.values())
    # Every task has its own programmed chip: device states, noise and reads of every layer.
    train_act = cls.activation_bytes(section, family, device, support, query, chunk, backward=True)
    train_act += chunk * n_devices * CHIP_BYTES_PER_DEVICE_BACKWARD
    eval_act = cls.activation_bytes(section, family, device, support, query, eval_chunk, backward=False)
    eval_act += eval_chunk * n_devices * CHIP_BYTES_PER_DEVICE
    tasks = _tree_bytes(eqx.filter_eval_shape(lambda: family.sample(jax.random.key(0), train["meta_batch"])))
    parts = {
        "runtime": RUNTIME_BYTES,
        "parameters": PARAMETER_COPIES * params,
        "data": _tree_bytes(family) + 2 * tasks,
        "activations": int(cls.ACTIVATION_OVERHEAD * max(train_act, eval_act)),
    }
    kind = section["kind"]
    labels = {
        "activations": (
            f"{kind} activations of a {chunk}-task chunk: reduce train.chunk_tasks or task or network sizes"
            if train_act >= eval_act
            else f"{kind} activations of a {eval_chunk}-task evaluation chunk: reduce eval.tasks or task or network sizes"
        ),
        "parameters": f"parameters ×{PARAMETER_COPIES}: reduce the network sizes",
        "data": "task data: reduce train.meta_batch or task sizes",
        "runtime": "the runtime",
    }
    top = max(parts, key=parts.get)
    return MemoryEstimate(sum(parts.values()), parts, f"{fmt_bytes(parts[top])} {labels[top]}")


def _parse_limit(text: str) -> int | None:
    value = text.strip().lower()
    if value in ("off", "none", "0"):
        return None
    units = {"k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
    scale = 1
    if value and value[-1] == "b":
        value = value[:-1]
    if value and value[-1] in units:
        scale, value = units[value[-1]], value[:-1]
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not (math.isfinite(number) and number > 0):
        raise UserInputError(f"{ENV_LIMIT}={safe_text(text, 40)!r}: give bytes with an optional K/M/G/T suffix (e.g. 16G), or 'off'")
    return int(number * scale)


def _cgroup_limit() -> int | None:
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**60:
            return int(text)
    return None


def available_memory() -> tuple[int | None, str]:
    """(bytes, where the figure comes from): `PCMMETA_MEMORY_LIMIT`; on an accelerator its memory;
    else the memory the kernel reports available (MemAvailable; physical pages where there is no
    /proc), capped by a cgroup limit. None: do not check."""
    if ENV_LIMIT in os.environ:
        return _parse_limit(os.environ[ENV_LIMIT]), ENV_LIMIT
    if jax.default_backend() != "cpu":
        stats = jax.devices()[0].memory_stats() or {}
        if stats.get("bytes_limit"):
            return int(stats["bytes_limit"]), f"{jax.devices()[0].device_kind} memory"
        return None, "accelerator"
    available, source = None, "physical memory"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available, source = int(line.split()[1]) * 1024, "available memory"
    except OSError:
        pass
    if available is None:
        try:
            available = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None, "unknown"
    limit = _cgroup_limit()
    if limit is not None and limit < available:
        available, source = limit, "the cgroup's memory limit"
    return available, source


def check_training_memory(recipe: dict, family, device, origin: str) -> MemoryEstimate:
    """Refuse (`UserInputError` naming `origin`, with the estimate) a recipe whose meta-training
    would not fit in the memory available; return the estimate."""
    estimate = estimate_training_memory(recipe, family, device)
    available, source = available_memory()
    if available is not None and estimate.total > available:
        raise UserInputError(
            f"{origin}: meta-training needs an estimated {fmt_bytes(estimate.total)}, more than the {fmt_bytes(available)} "
            f"of {source}; {estimate.dominant} ({ENV_LIMIT} overrides)"
        )
    return estimate
