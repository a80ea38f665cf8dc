"""Meta-training: the experiment a recipe describes, the optax step, checkpoints, evaluation.

`build_experiment` turns a validated recipe into typed objects once (network, task families,
mode, inner rule, clock, training and evaluation settings); nothing downstream reads the recipe
dict. The PRNG key of iteration i is `fold_in(key(seed), i)`, so a resumed run follows the same
trajectory as an uninterrupted one. With more than one JAX device the meta-batch is split over
them (`jax.sharding`); parameters are replicated.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import yaml
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from pcmmeta.core.clock import ChipClock
from pcmmeta.core.compatibility import check_experiment
from pcmmeta.core.inner import INNER_RULES
from pcmmeta.core.maml import MetaConfig, batch_results, outer_loss, predict
from pcmmeta.core.modes import MODES
from pcmmeta.core.networks import NETWORKS, AbstractNetwork
from pcmmeta.core.seeds import seed_key
from pcmmeta.core.tasks import AbstractTaskFamily, TaskBatch, sample_compiled
from pcmmeta.errors import UserInputError, short_repr
from pcmmeta.experiment.chunking import chunk_size
from pcmmeta.experiment.memory import check_training_memory
from pcmmeta.experiment.recipe import load_run_recipe
from pcmmeta.io.device_file import load_device
from pcmmeta.io.runs import (
    append_jsonl,
    atomic_write_text,
    check_latest_writable,
    check_run_format,
    new_run_dir,
    set_latest,
    write_json,
    write_run_format,
)
from pcmmeta.io.serial import load_eqx, save_eqx
from pcmmeta.io.task_data import build_task_family
from pcmmeta.runtime.distributed import is_writer


@dataclass(frozen=True)
class TrainConfig:
    iterations: int
    meta_batch: int
    learning_rate: float
    offchip_learning_rate: float
    warmup: int
    final_lr_fraction: float
    chunk_tasks: int
    checkpoint_every: int
    log_every: int


@dataclass(frozen=True)
class EvalConfig:
    tasks: int
    seed: int  # the test split's tasks and noise
    plot_tasks: int
    validation_seed: int  # the validation split's tasks and noise


@dataclass(frozen=True)
class Experiment:
    """Everything a recipe fixes, as typed objects. `recipe` is kept only to be written into
    the run directory."""

    name: str
    seed: int
    network: AbstractNetwork  # architecture and initial conductances
    family: AbstractTaskFamily  # training tasks
    eval_family: (
        AbstractTaskFamily  # the test split: the figures reported (classes never seen in training, where that applies)
    )
    validation_family: AbstractTaskFamily  # the validation split: what hyperparameters are chosen on
    meta: MetaConfig
    train: TrainConfig
    eval: EvalConfig
    recipe: dict


def init_key(seed: int) -> jax.Array:
    return jax.random.fold_in(seed_key(seed), -1 % (2**31))


@eqx.filter_jit
def init_network(
    cls: type[AbstractNetwork], key: jax.Array, architecture: eqx.Module, family: AbstractTaskFamily, device
) -> AbstractNetwork:
    """`cls.init` as one compiled program. Run op by op, a network's initialisation compiled a few
    dozen tiny programs on every start, each too quick for the compilation cache (build_experiment:
    1.5 s lif, 1.3 s cnn, 2.1 s rsnn before; docs/speed.md)."""
    return cls.init(key, architecture, family, device)


def build_experiment(recipe: dict, check_memory: str | None = None) -> Experiment:
    """The typed experiment of a validated recipe (`recipe.validate` / `load_recipe`). With
    `check_memory` (the recipe's file name, for the message), a recipe whose meta-training would
    not fit in memory is refused before the network is initialised (`pcmmeta.experiment.memory`)."""
    device = load_device(recipe["device"])
    family = build_task_family(recipe["task"])
    network_class = NETWORKS[recipe["network"]["kind"]]
    architecture = network_class.architecture_from(recipe["network"])
    train = TrainConfig(**recipe["train"])
    evaluation = EvalConfig(**recipe["eval"])
    m = recipe["maml"]
    rule = INNER_RULES[recipe["inner"]["rule"]].from_recipe(recipe["inner"])
    mode = MODES[recipe["mode"]].from_recipe(m)
    check_experiment(family, network_class, rule, mode, device)  # the one check of the combination
    if check_memory is not None:
        check_training_memory(
            network_class,
            architecture,
            family,
            device,
            tasks_per_chip=m["tasks_per_chip"],
            train=train,
            evaluation=evaluation,
            recipe=recipe,
            origin=check_memory,
        )
    meta = MetaConfig(
        device=device,
        mode=mode,
        rule=rule,
        clock=ChipClock(m["t_read"], m["t_prog"], m["t_wait"], rule.steps),
        programming_noise=m["programming_noise"],
        tasks_per_chip=m["tasks_per_chip"],
    )
    network = init_network(network_class, init_key(recipe["seed"]), architecture, family, device)
    rule.check_head({n: network.layers[n].shape[1:] for n in network.head})  # sizes only the network knows
    return Experiment(
        name=recipe["name"],
        seed=recipe["seed"],
        network=network,
        family=family,
        eval_family=family.split("test"),
        validation_family=family.split("validation"),
        meta=meta,
        train=train,
        eval=evaluation,
        recipe=recipe,
    )


class TrainState(eqx.Module):
    network: AbstractNetwork
    opt_state: optax.OptState
    iteration: jax.Array  # int32 scalar: iterations completed


def make_optimizer(train: TrainConfig) -> optax.GradientTransformation:
    """Adam on a warm-up + cosine schedule; conductances (µS) and off-chip float parameters
    each with their own peak rate, on the same schedule."""

    def adam(peak: float) -> optax.GradientTransformation:
        return optax.adam(
            optax.warmup_cosine_decay_schedule(
                init_value=0.0 if train.warmup else peak,
                peak_value=peak,
                warmup_steps=train.warmup,
                decay_steps=max(train.iterations, train.warmup + 1),
                end_value=peak * train.final_lr_fraction,
            )
        )

    return optax.multi_transform(
        {"conductance": adam(train.learning_rate), "offchip": adam(train.offchip_learning_rate)}, parameter_labels
    )


def parameter_labels(params: AbstractNetwork) -> AbstractNetwork:
    """ "conductance" for the layers' pairs, "offchip" for every other array of the network."""
    labels = jax.tree.map(lambda _: "offchip", params)
    return eqx.tree_at(lambda n: n.layers, labels, jax.tree.map(lambda _: "conductance", params.layers))


def init_state(exp: Experiment, optimizer: optax.GradientTransformation) -> TrainState:
    return _init_state(exp.network, optimizer)


# One program: op by op, the optimizer's zeros compiled a tiny program each. The optimizer (a
# tuple of functions) is a static argument: the same optimizer object reuses the program.
@eqx.filter_jit
def _init_state(network: AbstractNetwork, optimizer: optax.GradientTransformation) -> TrainState:
    return TrainState(network, optimizer.init(eqx.filter(network, eqx.is_array)), jnp.zeros((), jnp.int32))


def task_sharding() -> NamedSharding | None:
    """Split axis 0 (tasks) over all JAX devices when there is more than one."""
    devices = jax.devices()
    if len(devices) < 2:
        return None
    return NamedSharding(Mesh(np.array(devices), ("tasks",)), PartitionSpec("tasks"))


def make_train_step(exp: Experiment, optimizer: optax.GradientTransformation, meta_batch: int) -> Callable:
    """jitted (state, family) -> (state, loss, mean TaskResult).

    The family is an argument, not a closure: an image family carries its dataset as an array,
    which a closure would bake into the compiled program as a constant. The meta-batch is
    processed in chunks of `train.chunk_tasks` tasks whose gradients are accumulated (a scan):
    the mean of equal-sized chunk means is the batch mean, and only one chunk's activations are
    alive at a time, which bounds memory and keeps them in cache.
    """
    sharding = task_sharding()
    chunk, sharded = chunk_size(
        meta_batch, exp.train.chunk_tasks, exp.meta.tasks_per_chip, len(jax.devices()) if sharding else 1
    )
    sharding = sharding if sharded else None
    n_chunks = meta_batch // chunk
    base_key = seed_key(exp.seed)
    meta = exp.meta

    def shard(tree):
        if sharding is None:
            return tree
        return jax.tree.map(lambda a: jax.lax.with_sharding_constraint(a, sharding), tree)

    @eqx.filter_jit
    def step(state: TrainState, family: AbstractTaskFamily):
        key = jax.random.fold_in(base_key, state.iteration)
        k_tasks, k_noise = jax.random.split(key)
        tasks = family.sample(k_tasks, meta_batch)
        split = lambda a: a.reshape(n_chunks, chunk, *a.shape[1:])
        chunks = (jax.random.split(k_noise, n_chunks), jax.tree.map(split, tasks))
        chunk_grad = eqx.filter_value_and_grad(lambda net, k, t: outer_loss(net, k, t, family, meta), has_aux=True)

        def accumulate(grads, inputs):
            key_c, tasks_c = inputs
            (loss, results), g = chunk_grad(state.network, key_c, shard(tasks_c))
            return jax.tree.map(jnp.add, grads, g), (loss, jax.tree.map(lambda a: jnp.mean(a, axis=0), results))

        zeros = jax.tree.map(jnp.zeros_like, eqx.filter(state.network, eqx.is_array))
        grads, (losses, means) = jax.lax.scan(accumulate, zeros, chunks)
        grads = jax.tree.map(lambda g: g / n_chunks, grads)
        updates, opt_state = optimizer.update(grads, state.opt_state, eqx.filter(state.network, eqx.is_array))
        network = eqx.apply_updates(state.network, updates)
        if meta.mode.clips:
            network = network.clip(meta.device)  # devices cannot hold conductances outside their range
        return (
            TrainState(network, opt_state, state.iteration + 1),
            jnp.mean(losses),
            jax.tree.map(lambda a: jnp.mean(a, axis=0), means),
        )

    return step


def flat_means(means) -> dict[str, float]:
    """The training step's mean results as a flat record for metrics.jsonl."""
    record = {
        "loss_before": float(means.loss_before),
        "loss_after": float(means.loss_after),
        "pulses": float(means.pulses),
    }
    for name, per_step in means.metrics.items():
        values = np.asarray(per_step)
        record[f"{name}_before"], record[f"{name}_after"] = float(values[0]), float(values[-1])
    return record


# ------------------------------------------------------------------------------ checkpoints
def save_checkpoint(path: Path, state: TrainState) -> None:
    save_eqx(path, state)


def load_checkpoint(path: Path, like: TrainState) -> TrainState:
    run_dir = Path(path).parent
    return load_eqx(
        path,
        like,
        "checkpoint",
        f"nothing to resume from: train again with `pcmmeta meta-train {run_dir / 'recipe.yaml'}`",
    )


# ------------------------------------------------------------------------------- evaluation
def mean_sem(values) -> tuple[float, float]:
    """Mean and standard error of the mean (NaN s.e. for a single value: no spread to measure)."""
    values = np.asarray(values, np.float64)
    sem = float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else float("nan")
    return float(values.mean()), sem


@dataclass
class Evaluation:
    """Held-out results: the family's loss before/after adaptation and its metrics after every
    inner step (index 0: before adaptation), mean and s.e. over tasks."""

    n_tasks: int
    metric: str  # the family's primary metric
    higher_is_better: bool
    loss_before: float
    loss_after: float
    metrics: dict[str, list[float]]
    metrics_sem: dict[str, list[float]]
    baselines: dict[str, float]
    pulses_per_task: float

    def before(self, name: str | None = None) -> float:
        return self.metrics[name or self.metric][0]

    def after(self, name: str | None = None) -> float:
        return self.metrics[name or self.metric][-1]

    def curve(self, name: str | None = None) -> list[dict]:
        name = name or self.metric
        return [
            {"step": i, "mean": m, "sem": s} for i, (m, s) in enumerate(zip(self.metrics[name], self.metrics_sem[name]))
        ]

    def to_json(self) -> dict:
        """Flat: `<metric>_before`, `<metric>_after`, `sem_<metric>_before`/`_after`,
        `<metric>_per_step` (and its s.e.) for every metric, the baselines, the loss."""

        def finite(x):
            return x if math.isfinite(x) else None  # JSON has no NaN

        out: dict = {
            "n_tasks": self.n_tasks,
            "metric": self.metric,
            "loss_before": self.loss_before,
            "loss_after": self.loss_after,
        }
        for name, values in self.metrics.items():
            sems = self.metrics_sem[name]
            out[f"{name}_before"], out[f"{name}_after"] = values[0], values[-1]
            out[f"sem_{name}_before"], out[f"sem_{name}_after"] = finite(sems[0]), finite(sems[-1])
            out[f"{name}_per_step"], out[f"sem_{name}_per_step"] = values, [finite(s) for s in sems]
        out.update(self.baselines)
        out["pulses_per_task"] = self.pulses_per_task
        return out


def split_family(exp: Experiment, split: str) -> AbstractTaskFamily:
    """The family of a held-out split: "test" (reported) or "validation" (for choosing)."""
    if split not in ("test", "validation"):
        raise ValueError(f"split {split!r}: held-out evaluation is on 'test' or 'validation'")
    return exp.eval_family if split == "test" else exp.validation_family


def held_out_tasks(
    exp: Experiment, n_tasks: int | None = None, seed: int | None = None, split: str = "test"
) -> tuple[TaskBatch, jax.Array]:
    """The held-out tasks of a split (NumPy arrays: slicing them compiles nothing) and the key of
    their device noise; the split's own seed (`eval.seed`, `eval.validation_seed`) unless given."""
    if seed is None:
        seed = exp.eval.seed if split == "test" else exp.eval.validation_seed
    key = seed_key(seed)
    return sample_compiled(split_family(exp, split), key, n_tasks or exp.eval.tasks), jax.random.fold_in(key, 1)


@eqx.filter_jit
def _batch_results(network, key, tasks, family, meta):
    return batch_results(network, key, tasks, family, meta)


def summarize(results, family: AbstractTaskFamily, tasks: TaskBatch) -> Evaluation:
    """Mean ± s.e. over tasks of per-task results (numpy arrays, axis 0 = task)."""
    metrics, sems = {}, {}
    for name, per_step in results.metrics.items():
        pairs = [mean_sem(per_step[:, s]) for s in range(per_step.shape[1])]
        metrics[name], sems[name] = [p[0] for p in pairs], [p[1] for p in pairs]
    return Evaluation(
        n_tasks=int(results.loss_before.shape[0]),
        metric=family.metric,
        higher_is_better=family.higher_is_better,
        loss_before=float(results.loss_before.mean()),
        loss_after=float(results.loss_after.mean()),
        metrics=metrics,
        metrics_sem=sems,
        baselines=family.baselines(tasks),
        pulses_per_task=float(results.pulses.mean()),
    )


def held_out_results(
    exp: Experiment,
    network: AbstractNetwork,
    n_tasks: int | None = None,
    seed: int | None = None,
    chunk: int = 50,
    split: str = "test",
):
    """Per-task results (numpy, axis 0 = task) on a split's fixed held-out set, and its tasks."""
    tasks, key = held_out_tasks(exp, n_tasks, seed, split)
    family = split_family(exp, split)
    parts = []
    for i, start in enumerate(range(0, tasks.n_tasks, chunk)):
        sub = jax.tree.map(lambda a, lo=start: a[lo : lo + chunk], tasks)
        parts.append(
            jax.tree.map(np.asarray, _batch_results(network, jax.random.fold_in(key, i), sub, family, exp.meta))
        )
    return jax.tree.map(lambda *a: np.concatenate(a), *parts), tasks


def evaluate(
    exp: Experiment,
    network: AbstractNetwork,
    n_tasks: int | None = None,
    seed: int | None = None,
    chunk: int = 50,
    split: str = "test",
) -> Evaluation:
    """Metrics on a split's fixed held-out set (same tasks and noise for every run of this
    recipe): "test" for the figures reported, "validation" for choosing hyperparameters."""
    results, tasks = held_out_results(exp, network, n_tasks, seed, chunk, split)
    return summarize(results, split_family(exp, split), tasks)


def plot_evaluation(
    exp: Experiment, network: AbstractNetwork, path: Path, evaluation: Evaluation | None = None
) -> None:
    n_plot = exp.eval.plot_tasks
    if n_plot == 0:
        return
    tasks, key = held_out_tasks(exp)
    sub = jax.tree.map(lambda a: a[:n_plot], tasks)
    family = exp.eval_family
    outputs = eqx.filter_jit(predict)(
        network, jax.random.fold_in(key, 10_000), sub, family, exp.meta, family.plot_inputs(sub)
    )
    title = f"{exp.name} ({exp.meta.mode.name}, {exp.meta.rule.name}): held-out tasks"
    from pcmmeta.io.plots import plot_tasks  # matplotlib: only when a figure is drawn

    plot_tasks(family.figure(sub, np.asarray(outputs)), path, title, evaluation.curve() if evaluation else None)


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
    """A new run directory with the recipe. `runs_root/LATEST` points to it once `train` has
    written its first checkpoint (a run with nothing resumable is never the latest). With
    several hosts only process 0 creates it; the others get a path they never write to."""
    if not is_writer():
        return Path(runs_root) / f"{recipe['name']}-process-{jax.process_index()}-writes-nothing"
    check_latest_writable(runs_root)
    run_dir = new_run_dir(runs_root, recipe["name"])
    write_run_format(run_dir)
    atomic_write_text(run_dir / "recipe.yaml", yaml.safe_dump(recipe, sort_keys=False))
    return run_dir


def train(
    recipe: dict,
    run_dir: Path,
    resume: bool = False,
    on_iteration: Callable[[int, float, dict], None] | None = None,
    evaluate_at_end: bool = True,
    experiment: Experiment | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_checkpoint: Callable[[int], None] | None = None,
    before_evaluation: Callable[[], None] | None = None,
) -> TrainOutcome:
    """Run (or continue) meta-training in `run_dir`. Ctrl-C (or `should_stop()` turning true,
    checked after every iteration) saves a checkpoint and returns with `interrupted=True`; a
    NaN loss raises `NaNLossError` and leaves the last good checkpoint. `on_checkpoint(i)` is
    called after each checkpoint is written (i = its iteration)."""
    exp = experiment or build_experiment(recipe)
    tr = exp.train
    optimizer = make_optimizer(tr)
    state = init_state(exp, optimizer)
    ckpt = run_dir / "checkpoint.eqx"
    metrics = run_dir / "metrics.jsonl"
    writer = is_writer()  # with several hosts, only process 0 writes the run directory
    if resume and ckpt.exists():
        state = load_checkpoint(ckpt, state)
        done = int(state.iteration)
        if writer and metrics.exists():  # drop lines written after the checkpoint: the resumed run rewrites them
            iterations = metrics_iterations(metrics)
            lines = [l for l, it in iterations if it is not None and it <= done]
            atomic_write_text(metrics, "".join(l + "\n" for l in lines))
    elif writer and not resume:
        save_checkpoint(ckpt, state)
    if on_checkpoint:
        on_checkpoint(int(state.iteration))
    if writer:
        set_latest(run_dir)
    step = make_train_step(exp, optimizer, tr.meta_batch)
    good = state
    interrupted = False
    t_start = time.perf_counter()
    try:
        while int(state.iteration) < tr.iterations:
            new_state, loss, means = step(state, exp.family)
            loss = float(loss)
            it = int(new_state.iteration)
            if not math.isfinite(loss):
                if writer:
                    save_checkpoint(ckpt, good)
                raise NaNLossError(
                    f"loss became {loss} at iteration {it}; the last good checkpoint (iteration {int(good.iteration)}) is kept in {ckpt}"
                )
            state = new_state
            record = flat_means(means)
            if writer and (it % tr.log_every == 0 or it == tr.iterations):
                append_jsonl(
                    metrics, {"iteration": it, "loss": loss, **record, "elapsed_s": time.perf_counter() - t_start}
                )
            if writer and (it % tr.checkpoint_every == 0 or it == tr.iterations):
                save_checkpoint(ckpt, state)
                good = state
                if on_checkpoint:
                    on_checkpoint(it)
            if on_iteration:
                on_iteration(it, loss, record)
            if should_stop and should_stop():
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        if writer:
            save_checkpoint(ckpt, state)
        if on_checkpoint:
            on_checkpoint(int(state.iteration))
        interrupted = True
    evaluation = None
    if not interrupted and evaluate_at_end:
        if before_evaluation:
            before_evaluation()
        evaluation = finish_run(exp, state.network, run_dir)
    return TrainOutcome(run_dir, state, interrupted, evaluation)


def _iteration_of(line: str) -> int | None:
    """The iteration of a metrics.jsonl line; None for a line that is not a record."""
    try:
        return int(json.loads(line)["iteration"])
    except (ValueError, KeyError, TypeError):
        return None


def metrics_iterations(path: Path) -> list[tuple[str, int | None]]:
    """(line, iteration) of each line of a run's metrics.jsonl. Only the last line may be cut
    off (a process that died mid-write: its iteration is None); a line that is not a record
    before it, or bytes that are not UTF-8, mean a damaged file (`UserInputError`)."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise UserInputError(f"{path}: not UTF-8 text at byte {err.start} (damaged run?)") from None
    lines = text.splitlines()
    iterations = [(line, _iteration_of(line)) for line in lines]
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    for i, (line, it) in enumerate(iterations):
        if it is None and line.strip() and i != last:
            raise UserInputError(f"{path}:{i + 1}: not a metrics record (damaged run?): {short_repr(line)}")
    return iterations


def finish_run(exp: Experiment, network: AbstractNetwork, run_dir: Path) -> Evaluation:
    from pcmmeta.io.plots import plot_training_curve

    evaluation = evaluate(exp, network)
    if not is_writer():  # several hosts: process 0 writes the results
        return evaluation
    write_json(
        run_dir / "evaluation.json",
        {
            "recipe": exp.name,
            "mode": exp.meta.mode.name,
            "inner": exp.meta.rule.name,
            "data": exp.family.data_description() or None,
            **evaluation.to_json(),
        },
    )
    plot_training_curve(run_dir / "metrics.jsonl", run_dir / "training-curve.png")
    plot_evaluation(exp, network, run_dir / "evaluation.png", evaluation)
    return evaluation


def load_run(run_dir: Path) -> tuple[Experiment, TrainState]:
    """The experiment and last checkpoint of a run directory (`UserInputError` for a run made
    by an older pcmmeta or a damaged checkpoint)."""
    check_run_format(run_dir)
    recipe = load_run_recipe(run_dir)
    exp = build_experiment(recipe)
    state = init_state(exp, make_optimizer(exp.train))
    return exp, load_checkpoint(run_dir / "checkpoint.eqx", state)
