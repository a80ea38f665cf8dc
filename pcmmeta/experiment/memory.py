"""Peak memory of meta-training, estimated from the typed pieces of an experiment before anything
is allocated, and the check that refuses a recipe too large for this machine (docs/recipes.md,
"Memory").

The estimate sums what is alive at the peak:
- the runtime (Python, JAX, XLA and the compiled programs), measured;
- the meta-parameters with their gradients, Adam moments and checkpoint copies;
- the task family's data and one meta-batch of tasks;
- the larger of the activations of one gradient-accumulation chunk (`train.chunk_tasks` tasks,
  kept for the backward pass) and of one evaluation chunk (forward only): the network's
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

from pcmmeta.core.devices import AbstractPCMDevice
from pcmmeta.core.networks import AbstractNetwork
from pcmmeta.core.tasks import AbstractTaskFamily
from pcmmeta.errors import UserInputError, safe_text
from pcmmeta.experiment.chunking import chunk_size
from pcmmeta.experiment.recipe import PLUGIN_SECTIONS, SCHEMA, plugin_schema

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
#: Peak bytes per drawing while the built-in glyphs are generated and split (`pcmmeta.io.imagedata`):
#: the uint8 drawing (784 B), its float32 copies in the full set, the two class splits and the
#: rounding back to uint8 (4 × 3136 B), the family's uint8 copies (2 × 784 B), control points
#: (256 B): ≈ 15 kB, rounded up.
GLYPH_BYTES_PER_DRAWING = 16 * 2**10
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
    dominant: str  # the largest part, with the recipe keys it grows with ("bytes what: keys")

    @property
    def largest(self) -> str:
        """The largest part, bytes and what it is, without the keys."""
        return self.dominant.split(":")[0]

    def describe(self) -> str:
        return f"{fmt_bytes(self.total)} ({self.dominant})"


def _tree_bytes(tree) -> int:
    """Bytes of the arrays (or traced shapes) in a pytree."""
    return sum(
        math.prod(a.shape) * a.dtype.itemsize
        for a in jax.tree.leaves(tree)
        if hasattr(a, "shape") and hasattr(a, "dtype")
    )


def _sampled_bytes(family, n_tasks: int, key: str, origin: str, recipe: dict) -> int:
    """Bytes of `n_tasks` tasks of `family`, traced (shapes only). A draw too large for
    `pcmmeta.core.noise` (more than 2^32 numbers) fails while tracing: refused naming the data
    key the recipe sets furthest above its default (`task.shots`, …), else `key`."""
    try:
        return _tree_bytes(eqx.filter_eval_shape(lambda: family.sample(jax.random.key(0), n_tasks)))
    except UserInputError:  # a ValueError too, but the family's own message names its key
        raise
    except ValueError as err:
        grown = largest_size(recipe, "data") or f"'{key}' = {n_tasks}"
        keys = {grown.split(" = ")[0], f"'{key}'"}
        raise UserInputError(
            f"{origin}: {grown}: {n_tasks:,} tasks ('{key}') of this size are too many to draw at once ({err}); "
            f"reduce {' or '.join(sorted(keys))}"
        ) from None


def estimate_training_memory(
    network_class: type[AbstractNetwork],
    architecture: eqx.Module,
    family: AbstractTaskFamily,
    device: AbstractPCMDevice,
    *,
    tasks_per_chip: int,
    train,
    evaluation,
    recipe: dict,
    origin: str = "recipe",
) -> MemoryEstimate:
    """Peak bytes of meta-training a network of `network_class` and `architecture` (its
    `architecture_class`) on this task family and device, `tasks_per_chip` tasks sharing a
    programmed chip (`MetaConfig.tasks_per_chip`), with the experiment's `TrainConfig` and
    `EvalConfig` (`pcmmeta.experiment.train`, which imports this module), including the final
    evaluation (its held-out tasks are sampled all at once). `recipe`, the validated recipe they
    were built from, only names the key to reduce in a refusal."""
    batch = eqx.filter_eval_shape(lambda: family.sample(jax.random.key(0), 1))
    support, query = batch.x_support.shape[1], batch.x_query.shape[1]
    chunk, _ = chunk_size(train.meta_batch, train.chunk_tasks, tasks_per_chip)
    eval_chunk = min(EVAL_CHUNK, evaluation.tasks)
    net = eqx.filter_eval_shape(lambda: network_class.init(jax.random.key(0), architecture, family, device))
    params = _tree_bytes(net)
    n_devices = sum(math.prod(g.shape) for g in net.layers.values())
    # Every task has its own programmed chip: device states, noise and reads of every layer.
    train_act = net.activation_bytes(family, support, query, chunk, backward=True)
    train_act += chunk * n_devices * CHIP_BYTES_PER_DEVICE_BACKWARD
    eval_act = net.activation_bytes(family, support, query, eval_chunk, backward=False)
    eval_act += eval_chunk * n_devices * CHIP_BYTES_PER_DEVICE
    # A meta-batch is sampled inside the compiled step (with its chunked copy: ×2); the held-out
    # set is sampled in one program and copied to NumPy (×2) before it is evaluated chunk by chunk.
    tasks = _sampled_bytes(family, train.meta_batch, "train.meta_batch", origin, recipe)
    held_out = _sampled_bytes(family, evaluation.tasks, "eval.tasks", origin, recipe)
    parts = {
        "runtime": RUNTIME_BYTES,
        "parameters": PARAMETER_COPIES * params,
        "data": _tree_bytes(family) + 2 * tasks + 2 * held_out,
        "activations": int(network_class.ACTIVATION_OVERHEAD * max(train_act, eval_act)),
    }
    kind = network_class.kind
    labels = {
        "activations": (
            f"{kind} activations of a {chunk}-task chunk: reduce train.chunk_tasks or task or network sizes"
            if train_act >= eval_act
            else f"{kind} activations of a {eval_chunk}-task evaluation chunk: reduce eval.tasks or task or network sizes"
        ),
        "parameters": f"parameters ×{PARAMETER_COPIES}: reduce the network sizes",
        "data": (
            "task data: reduce train.meta_batch or task sizes"
            if tasks >= held_out
            else "held-out task data: reduce eval.tasks or task sizes"
        ),
        "runtime": "the runtime",
    }
    top = max(parts, key=parts.get)
    return MemoryEstimate(sum(parts.values()), parts, f"{fmt_bytes(parts[top])} {labels[top]}")


#: The recipe keys each part of the estimate grows with ("network.", "task.": every size key of
#: the section's plug-in), for naming the one a refused recipe sets furthest above its default.
PART_KEYS = {
    "activations": ("network.", "task.", "train.chunk_tasks", "maml.tasks_per_chip"),
    "parameters": ("network.", "task."),
    "data": ("task.", "train.meta_batch", "eval.tasks"),
    "runtime": (),
}


def _size_keys(recipe: dict) -> list[tuple[str, object, object]]:
    """(dotted key, value, default) of every integer key of the validated recipe's schema."""
    out = []

    def walk(schema: dict, values: dict, prefix: str) -> None:
        for key, spec in schema.items():
            if prefix == "" and key in PLUGIN_SECTIONS:
                walk(plugin_schema(key, values[key][PLUGIN_SECTIONS[key][0]]), values[key], f"{key}.")
            elif isinstance(spec, dict):
                walk(spec, values[key], f"{prefix}{key}.")
            elif spec.kind in ("int", "ints") and key in values:
                out.append((f"{prefix}{key}", values[key], spec.default))

    walk(SCHEMA, recipe, "")
    return out


def _growth(value, default) -> float:
    """How far a size is above its default, as a ratio (of the largest entry, for a list)."""
    values = value if isinstance(value, list) else [value]
    defaults = default if isinstance(default, list) else [default] * len(values)
    return max(v / max(d, 1) for v, d in zip(values, defaults))


def largest_size(recipe: dict, part: str) -> str | None:
    """The key of `part` (see `PART_KEYS`) the recipe sets furthest above its default, as
    "'key' = value"; None when none is above its default."""
    keys = PART_KEYS[part]
    grown = [
        (k, v, d)
        for k, v, d in _size_keys(recipe)
        if any(k == p or (p.endswith(".") and k.startswith(p)) for p in keys)
    ]
    grown = [(k, v, d) for k, v, d in grown if _growth(v, d) > 1]
    if not grown:
        return None
    key, value, default = max(grown, key=lambda kvd: _growth(kvd[1], kvd[2]))
    return f"'{key}' = {value}"


def dataset_bytes(task: dict) -> int:
    """Peak bytes of building the task family's data from the validated recipe's `task` section,
    known before it is built: the built-in glyphs (glyph_classes × glyph_drawings drawings). The
    other families draw their tasks on the fly, and a folder of images is as large as its files."""
    if task["family"] == "images" and task.get("data") is None:
        return task["glyph_classes"] * task["glyph_drawings"] * GLYPH_BYTES_PER_DRAWING
    return 0


def check_dataset_memory(recipe: dict, origin: str) -> int:
    """Refuse (naming the keys) a recipe whose task data alone would not fit in memory, before
    the family generates it; return the estimate, bytes."""
    need = dataset_bytes(recipe["task"])
    if need:
        task = recipe["task"]
        refuse_if_too_large(
            RUNTIME_BYTES + need,
            f"{origin}: 'task.glyph_classes' = {task['glyph_classes']} × 'task.glyph_drawings' = {task['glyph_drawings']}",
            "the built-in glyphs",
            "reduce task.glyph_classes or task.glyph_drawings",
        )
    return need


def estimate_evaluation_memory(exp, network, n_tasks: int) -> MemoryEstimate:
    """Peak bytes of evaluating `n_tasks` held-out tasks of the experiment in one call, each
    task on its own read of the chip (`chip.drift_table`): the tasks (sampled, then copied to
    NumPy), the network's forward activations and every task's chip reads. The head's inner
    steps (adapted conditions) keep head-sized arrays only: not counted."""
    family = exp.eval_family
    batch = eqx.filter_eval_shape(lambda: family.sample(jax.random.key(0), 1))
    support, query = batch.x_support.shape[1], batch.x_query.shape[1]
    n_devices = network.n_devices()
    act = network.activation_bytes(family, support, query, n_tasks, backward=False)
    act += n_tasks * n_devices * CHIP_BYTES_PER_DEVICE
    parts = {
        "runtime": RUNTIME_BYTES,
        "parameters": 2 * _tree_bytes(network),  # the trained network and the deployed array
        "data": 2 * _tree_bytes(eqx.filter_eval_shape(lambda: family.sample(jax.random.key(0), n_tasks))),
        # No overhead factor: measured peaks were 1.05× these activations for lif (sine-quick,
        # 5,000 tasks: 8.0 GB, estimate 7.9 GB with the ×2 of training) but 0.66× for cnn
        # (glyphs-quick, 100 tasks: 2.7 GB); with the factor, drift-eval's default 300 tasks of
        # glyphs-5way-5shot (≈ 12 GB) would be refused on a 20 GB machine. A guard against
        # absurd sizes, not a promise that what passes fits.
        "activations": act,
    }
    top = max(parts, key=parts.get)
    return MemoryEstimate(sum(parts.values()), parts, f"{fmt_bytes(parts[top])} {top}")


def refuse_if_too_large(need: int, subject: str, what: str, advice: str) -> None:
    """`UserInputError` when `need` bytes (`what` needs them) exceed the memory available:
    "`subject`: `what` needs an estimated …, more than the … of …; `advice`"."""
    available, source = available_memory()
    if available is not None and need > available:
        raise UserInputError(
            f"{subject}: {what} needs an estimated {fmt_bytes(need)}, more than the {fmt_bytes(available)} of {source}; "
            f"{advice} ({ENV_LIMIT} overrides)"
        )


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
        raise UserInputError(
            f"{ENV_LIMIT}={safe_text(text, 40)!r}: give bytes with an optional K/M/G/T suffix (e.g. 16G), or 'off'"
        )
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


def check_training_memory(
    network_class: type[AbstractNetwork],
    architecture: eqx.Module,
    family: AbstractTaskFamily,
    device: AbstractPCMDevice,
    *,
    tasks_per_chip: int,
    train,
    evaluation,
    recipe: dict,
    origin: str,
) -> MemoryEstimate:
    """Refuse (`UserInputError` naming `origin`, with the estimate) an experiment whose
    meta-training would not fit in the memory available; return the estimate. The arguments are
    `estimate_training_memory`'s."""
    estimate = estimate_training_memory(
        network_class,
        architecture,
        family,
        device,
        tasks_per_chip=tasks_per_chip,
        train=train,
        evaluation=evaluation,
        recipe=recipe,
        origin=origin,
    )
    key = largest_size(recipe, max(estimate.parts, key=estimate.parts.get))
    # the key furthest above its default, else every key the part grows with
    advice = f"{estimate.largest}: reduce {key}" if key else estimate.dominant
    refuse_if_too_large(estimate.total, origin, "meta-training", advice)
    return estimate
