"""Meta-training: build the experiment from a recipe, the optax step, checkpoints, evaluation.

The PRNG key of iteration i is `fold_in(key(seed), i)`, so a resumed run follows the same
trajectory as an uninterrupted one. With more than one JAX device the meta-batch is split
over them (`jax.sharding`); parameters are replicated.
"""

from __future__ import annotations

import io
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import yaml
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from .device import load_device
from .distributed import is_writer
from .maml import Conductances, MAMLConfig, batch_results, init_conductances, outer_loss, predict
from .runs import append_jsonl, atomic_write_bytes, atomic_write_text, new_run_dir, set_latest, write_json
from .snn import LIFConfig
from .tasks import TASK_FAMILIES, AbstractTaskFamily


@dataclass(frozen=True)
class Experiment:
    """Everything a recipe fixes: the task family, the MAML configuration, the network sizes."""

    recipe: dict
    family: AbstractTaskFamily
    config: MAMLConfig
    channels: int
    hidden: tuple[int, int]


def build_experiment(recipe: dict) -> Experiment:
    t, n, m = recipe["task"], recipe["network"], recipe["maml"]
    family = TASK_FAMILIES[t["family"]](
        shots=t["shots"], amplitude=tuple(t["amplitude"]), phase=tuple(t["phase"]), x_range=tuple(t["x_range"])
    )
    lif = LIFConfig(
        time_steps=n["time_steps"], dt=n["dt"], tau_mem=n["tau_mem"], tau_out=n["tau_out"],
        threshold=n["threshold"], surrogate_beta=n["surrogate_beta"],
    )
    config = MAMLConfig(
        device=load_device(recipe["device"]), lif=lif, mode=recipe["mode"], inner_steps=m["inner_steps"],
        pulse_threshold=m["pulse_threshold"], mask_surrogate_beta=m["mask_surrogate_beta"],
        programming_noise=m["programming_noise"], t_read=m["t_read"], t_prog=m["t_prog"], t_wait=m["t_wait"],
        quantized_bits=m["quantized_bits"], ideal_lr=m["ideal_lr"],
        scale_in=n["scale_in"], scale_hidden=n["scale_hidden"], scale_out=n["scale_out"],
    )
    channels = int(family.encode(jnp.zeros((1, 1))).shape[-1])
    return Experiment(recipe, family, config, channels, tuple(n["hidden"]))


class TrainState(eqx.Module):
    params: Conductances
    opt_state: optax.OptState
    iteration: jax.Array  # int32 scalar: iterations completed


def make_optimizer(recipe: dict) -> optax.GradientTransformation:
    tr = recipe["train"]
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0 if tr["warmup"] else tr["learning_rate"],
        peak_value=tr["learning_rate"],
        warmup_steps=tr["warmup"],
        decay_steps=max(tr["iterations"], tr["warmup"] + 1),
        end_value=tr["learning_rate"] * tr["final_lr_fraction"],
    )
    return optax.adam(schedule)


def init_state(exp: Experiment, optimizer: optax.GradientTransformation) -> TrainState:
    key = jax.random.fold_in(jax.random.key(exp.recipe["seed"]), -1 % (2**31))
    params = init_conductances(key, exp.channels, exp.hidden, exp.config, exp.recipe["network"]["init_conductance"])
    return TrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32))


def task_sharding() -> NamedSharding | None:
    """Split axis 0 (tasks) over all JAX devices when there is more than one."""
    devices = jax.devices()
    if len(devices) < 2:
        return None
    return NamedSharding(Mesh(np.array(devices), ("tasks",)), PartitionSpec("tasks"))


def make_train_step(exp: Experiment, optimizer: optax.GradientTransformation, meta_batch: int) -> Callable:
    """jitted (state) -> (state, loss, TaskResult means).

    The meta-batch is processed in chunks of `train.chunk_tasks` tasks whose gradients are
    accumulated (a scan): the mean of equal-sized chunk means is the batch mean, and only one
    chunk's activations are alive at a time, which bounds memory and keeps them in cache.
    """
    sharding = task_sharding()
    n_dev = len(jax.devices())
    chunk = min(exp.recipe["train"]["chunk_tasks"], meta_batch)
    if sharding is not None:
        chunk = max(n_dev, chunk - chunk % n_dev)
        if meta_batch % n_dev:
            sharding = None  # an uneven split would pad; stay on one layout instead
    while meta_batch % chunk:
        chunk -= 1
    n_chunks = meta_batch // chunk
    base_key = jax.random.key(exp.recipe["seed"])
    family, config = exp.family, exp.config

    def shard(tree):
        if sharding is None:
            return tree
        return jax.tree.map(lambda a: jax.lax.with_sharding_constraint(a, sharding), tree)

    chunk_grad = jax.value_and_grad(lambda p, k, t: outer_loss(p, k, t, family, config), has_aux=True)

    @eqx.filter_jit
    def step(state: TrainState):
        key = jax.random.fold_in(base_key, state.iteration)
        k_tasks, k_noise = jax.random.split(key)
        tasks = family.sample(k_tasks, meta_batch)
        split = lambda a: a.reshape(n_chunks, chunk, *a.shape[1:])
        chunks = (jax.random.split(k_noise, n_chunks), jax.tree.map(split, tasks))

        def accumulate(grads, inputs):
            key_c, tasks_c = inputs
            (loss, results), g = chunk_grad(state.params, key_c, shard(tasks_c))
            return jax.tree.map(jnp.add, grads, g), (loss, jax.tree.map(jnp.mean, results))

        zeros = jax.tree.map(jnp.zeros_like, state.params)
        grads, (losses, means) = jax.lax.scan(accumulate, zeros, chunks)
        grads = jax.tree.map(lambda g: g / n_chunks, grads)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        if config.mode != "ideal":
            params = params.clip(config.device)  # devices cannot hold conductances outside their range
        return TrainState(params, opt_state, state.iteration + 1), jnp.mean(losses), jax.tree.map(jnp.mean, means)

    return step


# ------------------------------------------------------------------------------ checkpoints
def save_checkpoint(path: Path, state: TrainState) -> None:
    buf = io.BytesIO()
    eqx.tree_serialise_leaves(buf, state)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: Path, like: TrainState) -> TrainState:
    with open(path, "rb") as fh:
        return eqx.tree_deserialise_leaves(io.BytesIO(fh.read()), like)


# ------------------------------------------------------------------------------- evaluation
@dataclass
class Evaluation:
    mse_before: float
    mse_after: float
    mse_before_last: float
    mse_after_last: float
    mse_zero: float
    mse_zero_last: float
    pulses_per_task: float
    n_tasks: int
    sem_before: float
    sem_after: float

    def to_json(self) -> dict:
        return dict(self.__dict__)


def held_out_tasks(exp: Experiment, n_tasks: int | None = None, seed: int | None = None):
    ev = exp.recipe["eval"]
    key = jax.random.key(ev["seed"] if seed is None else seed)
    return exp.family.sample(key, n_tasks or ev["tasks"]), jax.random.fold_in(key, 1)


def evaluate(exp: Experiment, params: Conductances, n_tasks: int | None = None, seed: int | None = None, chunk: int = 50) -> Evaluation:
    """Query MSE on a fixed held-out set (same tasks and noise for every run of this recipe)."""
    tasks, key = held_out_tasks(exp, n_tasks, seed)
    n = tasks.y_query.shape[0]
    fn = eqx.filter_jit(lambda p, k, t: batch_results(p, k, t, exp.family, exp.config))
    parts = []
    for i, start in enumerate(range(0, n, chunk)):
        sub = jax.tree.map(lambda a: a[start : start + chunk], tasks)
        parts.append(jax.tree.map(np.asarray, fn(params, jax.random.fold_in(key, i), sub)))
    r = jax.tree.map(lambda *a: np.concatenate(a), *parts)
    zero = float(np.mean(np.asarray(tasks.y_query) ** 2))
    return Evaluation(
        mse_before=float(r.loss_before.mean()), mse_after=float(r.loss_after.mean()),
        mse_before_last=float(r.loss_before_last.mean()), mse_after_last=float(r.loss_after_last.mean()),
        mse_zero=zero, mse_zero_last=zero, pulses_per_task=float(r.pulses.mean()), n_tasks=n,
        sem_before=float(r.loss_before.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan"),
        sem_after=float(r.loss_after.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan"),
    )


def plot_evaluation(exp: Experiment, params: Conductances, path: Path) -> None:
    from .plots import plot_task_predictions

    n_plot = exp.recipe["eval"]["plot_tasks"]
    if n_plot == 0:
        return
    tasks, key = held_out_tasks(exp)
    lo, hi = exp.family.x_range
    grid = jnp.linspace(lo, hi, 100)[:, None]
    sub = jax.tree.map(lambda a: a[:n_plot], tasks)
    before, after = predict(params, jax.random.fold_in(key, 10_000), sub, exp.family, exp.config, grid)
    rows = [
        dict(
            x=np.asarray(grid[:, 0]), target=np.asarray(exp.family.target(sub.params[i], grid)),
            before=np.asarray(before[i]), after=np.asarray(after[i]),
            x_support=np.asarray(sub.x_support[i, :, 0]), y_support=np.asarray(sub.y_support[i]),
        )
        for i in range(n_plot)
    ]
    plot_task_predictions(rows, path, title=f"{exp.recipe['name']} ({exp.config.mode}): time-averaged readout")


# ------------------------------------------------------------------------------ the loop
class NaNLossError(RuntimeError):
    pass


@dataclass
class TrainOutcome:
    run_dir: Path
    state: TrainState
    interrupted: bool
    evaluation: Evaluation | None


def start_run(recipe: dict, runs_root: Path) -> Path:
    run_dir = new_run_dir(runs_root, recipe["name"])
    atomic_write_text(run_dir / "recipe.yaml", yaml.safe_dump(recipe, sort_keys=False))
    set_latest(run_dir)
    return run_dir


def train(
    recipe: dict,
    run_dir: Path,
    resume: bool = False,
    on_iteration: Callable[[int, float, dict], None] | None = None,
    evaluate_at_end: bool = True,
) -> TrainOutcome:
    """Run (or continue) meta-training in `run_dir`. Ctrl-C saves a checkpoint and returns with
    `interrupted=True`; a NaN loss raises `NaNLossError` and leaves the last good checkpoint."""
    exp = build_experiment(recipe)
    tr = recipe["train"]
    optimizer = make_optimizer(recipe)
    state = init_state(exp, optimizer)
    ckpt = run_dir / "checkpoint.eqx"
    metrics = run_dir / "metrics.jsonl"
    if resume and ckpt.exists():
        state = load_checkpoint(ckpt, state)
        done = int(state.iteration)
        if metrics.exists():  # drop lines written after the checkpoint: the resumed run rewrites them
            lines = [l for l in metrics.read_text().splitlines() if l and json.loads(l)["iteration"] <= done]
            atomic_write_text(metrics, "".join(l + "\n" for l in lines))
    elif not resume:
        save_checkpoint(ckpt, state)
    step = make_train_step(exp, optimizer, tr["meta_batch"])
    writer = is_writer()  # with several hosts, only process 0 writes the run directory
    good = state
    interrupted = False
    t_start = time.perf_counter()
    try:
        while int(state.iteration) < tr["iterations"]:
            new_state, loss, means = step(state)
            loss = float(loss)
            it = int(new_state.iteration)
            if not math.isfinite(loss):
                save_checkpoint(ckpt, good)
                raise NaNLossError(f"loss became {loss} at iteration {it}; the last good checkpoint (iteration {int(good.iteration)}) is kept in {ckpt}")
            state = new_state
            record = {k: float(v) for k, v in means.__dict__.items()}
            if writer and (it % tr["log_every"] == 0 or it == tr["iterations"]):
                append_jsonl(metrics, {"iteration": it, "loss": loss, **record, "elapsed_s": time.perf_counter() - t_start})
            if writer and (it % tr["checkpoint_every"] == 0 or it == tr["iterations"]):
                save_checkpoint(ckpt, state)
                good = state
            if on_iteration:
                on_iteration(it, loss, record)
    except KeyboardInterrupt:
        save_checkpoint(ckpt, state)
        interrupted = True
    evaluation = None
    if not interrupted and evaluate_at_end:
        evaluation = finish_run(exp, state.params, run_dir)
    return TrainOutcome(run_dir, state, interrupted, evaluation)


def finish_run(exp: Experiment, params: Conductances, run_dir: Path) -> Evaluation:
    from .plots import plot_training_curve

    evaluation = evaluate(exp, params)
    write_json(run_dir / "evaluation.json", {"recipe": exp.recipe["name"], "mode": exp.config.mode, **evaluation.to_json()})
    plot_training_curve(run_dir / "metrics.jsonl", run_dir / "training-curve.png")
    plot_evaluation(exp, params, run_dir / "evaluation.png")
    return evaluation


def load_run(run_dir: Path) -> tuple[Experiment, TrainState]:
    """The experiment and last checkpoint of a run directory."""
    recipe = yaml.safe_load((run_dir / "recipe.yaml").read_text())
    exp = build_experiment(recipe)
    state = init_state(exp, make_optimizer(recipe))
    return exp, load_checkpoint(run_dir / "checkpoint.eqx", state)
