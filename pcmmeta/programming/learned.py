"""Learned programming: write-verify whose controller has learned when a verify read is worth it.

Write-verify spends one verify read per SET pulse and accepts a device whose read lands within
`tolerance`. A device far below its target does not need to be read after every pulse: its
next few increments are predictable from the device model (large right after a RESET, smaller
as the conductance grows). The `ProgrammingPolicy` is a small MLP with two outputs per device
and verify read: how many SET pulses to apply blind before the next verify read (the burst),
and the acceptance band, a multiple of `tolerance` in (0.5, 1.5) — so it can spend precision
where it is cheap and save reads where it is dear; it is judged on the true error, against
write-verify's. The rest is write-verify's rule: a read above the band means RESET (SET cannot
lower a conductance), every device respects the pulse budget and gets a verify read after its
last pulse. Right after a RESET the controller knows the device sits at the RESET level, so it
starts a burst without reading first. With a band of 1 and bursts of 1 this is write-verify.

What the policy sees is what a chip controller sees: the target, the last verify read (the
RESET level right after a RESET), the SET pulses since the last RESET and the share of the pulse
budget spent; from those it also gets the device model's mean-trajectory estimate of the pulses
still needed (`_features`).

Training (`train_policy`) uses evolution strategies (antithetic, rank-shaped, Adam): the
objective is the exact programming simulation a deployment runs — programming time from the
cost model plus penalties for error and for devices left outside tolerance. The costs that
matter are discrete events (an overshoot throws away the whole pulse sequence and costs a RESET
and a restart); a pathwise gradient through the relaxed loop sees only the local change of the
conductance and not those events, so ES on the true objective is used (docs/programming.md).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from pathlib import Path
from typing import Callable, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float, PRNGKeyArray

from ..device import PCMDevice
from ..errors import UserInputError
from .base import AbstractProgrammingMethod, ProgramResult
from .cost import ProgrammingCost, counts_time
from .write_verify import write_verify

#: Most SET pulses one blind burst may hold.
MAX_BURST = 24
N_FEATURES = 6
POLICY_FORMAT = 1
_MAGIC = b"PCMMETA-PROGRAMMING-POLICY\n"


def device_fingerprint(device: PCMDevice) -> str:
    """A short hash of the device's family and parameters (not its name): a policy is valid for
    these. A nandakumar2018 device hashes its parameters alone, as before there were families,
    so the policies cached for it stay valid; every other family hashes its name too."""
    params = {k: float(v) for k, v in device.to_dict().items() if k != "name"}
    body = params if device.family == "nandakumar2018" else {"family": device.family, "parameters": params}
    text = json.dumps(body, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class ProgrammingPolicy(eqx.Module):
    """Burst size (SET pulses before the next verify read) from what the controller sees."""

    mlp: eqx.nn.MLP

    def __init__(self, key: PRNGKeyArray, width: int = 16, depth: int = 2):
        mlp = eqx.nn.MLP(N_FEATURES, 2, width, depth, activation=jax.nn.tanh, key=key)
        # Start as write-verify: one pulse per read (a burst of 1.4 rounds to 1, close enough to
        # 1.5 that the first perturbations of evolution strategies already try bursts of 2), and
        # an acceptance band of exactly the tolerance.
        last = mlp.layers[-1]
        bias = jnp.array([np.log(np.expm1(1.4)), 0.0], jnp.float32)
        last = eqx.tree_at(lambda l: (l.weight, l.bias), last, (jnp.zeros_like(last.weight), bias))
        self.mlp = eqx.tree_at(lambda m: m.layers[-1], mlp, last)

    def __call__(self, features: Float[Array, "n 6"]) -> tuple[Float[Array, " n"], Float[Array, " n"]]:
        """Per device: the real-valued burst size ≥ 0 (rounded by the caller) and the acceptance
        band as a multiple of the tolerance, in (0.5, 1.5)."""
        out = jax.vmap(self.mlp)(features)
        return jax.nn.softplus(out[:, 0]), 0.5 + jax.nn.sigmoid(out[:, 1])

    def burst(self, features: Float[Array, "n 6"]) -> Float[Array, " n"]:
        return self(features)[0]


def _features(device: PCMDevice, target, g_seen, n_set, spent, max_pulses) -> Float[Array, "n 6"]:
    span = device.g_max - device.g_min
    pulses_left = (device.pulses_to_reach(target) - device.pulses_to_reach(g_seen)).astype(jnp.float32)
    return jnp.stack(
        [
            (target - device.g_min) / span,
            (g_seen - device.g_min) / span,
            4.0 * (target - g_seen) / span,
            pulses_left / 8.0,
            jnp.exp(-n_set.astype(jnp.float32) / 3.0),
            spent.astype(jnp.float32) / max_pulses,
        ],
        axis=-1,
    )


def learned_program(
    key: PRNGKeyArray,
    device: PCMDevice,
    target: Float[Array, " n"],
    policy: ProgrammingPolicy,
    tolerance: float = 0.5,
    max_pulses: int = 100,
    step_s: float = 1.0,
) -> ProgramResult:
    """Program every device with write-verify's rule and the policy's blind bursts.

    One tick (`step_s` of simulated time) per SET pulse; a verify read happens at the start of
    a tick whose device has no burst pulses left, as in write-verify.
    """
    k_reset, k_loop = jax.random.split(key)
    state = device.initial_state(k_reset, target.shape, t=0.0)
    zeros = jnp.zeros(target.shape, jnp.int32)

    def cond(carry):
        active, i = carry[-2], carry[-1]
        return jnp.any(active) & (i <= 2 * max_pulses)

    def body(carry):
        state, sets, resets, reads, converged, burst_left, fresh, active, i = carry
        t = (i + 1).astype(jnp.float32) * step_s
        k_read, k_set, k_reset = jax.random.split(jax.random.fold_in(k_loop, i), 3)
        spent = sets + resets
        has_budget = spent < max_pulses
        # a device RESET on the last tick sits at the RESET level: it starts a burst unread
        verify = active & (burst_left == 0) & ~fresh
        g_read = device.read(k_read, state, t)
        reads = reads + verify
        g_seen = jnp.where(fresh, device.reset_mean, g_read)
        burst, accept = policy(_features(device, target, g_seen, state.n_set, spent, max_pulses))
        error = g_read - target
        ok = verify & (jnp.abs(error) <= tolerance * accept)
        converged = converged | ok
        below = verify & ~ok & (error < 0) & has_budget
        do_reset = verify & ~ok & (error > 0) & has_budget
        burst = jnp.clip(jnp.floor(burst + 0.5), 1, jnp.minimum(MAX_BURST, max_pulses - spent)).astype(jnp.int32)
        burst_left = jnp.where(below | (fresh & has_budget), burst, burst_left)
        do_set = active & ~do_reset & (burst_left > 0) & has_budget
        state = device.set_pulse(k_set, state, do_set, t)
        state = device.reset(k_reset, state, do_reset, t)
        sets, resets = sets + do_set, resets + do_reset
        burst_left = burst_left - do_set
        active = active & ~ok & (has_budget | ~verify)
        return state, sets, resets, reads, converged, burst_left, do_reset, active, i + 1

    no = jnp.zeros(target.shape, bool)
    init = (state, zeros, zeros, zeros, no, zeros, no, jnp.ones(target.shape, bool), jnp.zeros((), jnp.int32))
    state, sets, resets, reads, converged, _, _, _, i = jax.lax.while_loop(cond, body, init)
    return ProgramResult(state, sets, resets, reads, converged, i.astype(jnp.float32) * step_s)


# ----------------------------------------------------------------------------- the saved policy
@dataclasses.dataclass(frozen=True)
class PolicyInfo:
    """What a policy was trained for and how; stored in the policy file's header."""

    device_name: str
    device_fingerprint: str
    tolerance_uS: float
    max_pulses: int
    cost: dict
    width: int = 16
    depth: int = 2
    targets: str = "uniform"
    iterations: int = 0
    seed: int = 0
    format: int = POLICY_FORMAT


class LearnedProgramming(AbstractProgrammingMethod):
    name: ClassVar[str] = "learned"
    has_budget: ClassVar[bool] = True
    policy: ProgrammingPolicy
    tolerance: float = eqx.field(static=True, default=0.5)  # µS
    max_pulses: int = eqx.field(static=True, default=100)

    def program(self, key, device, target):
        return learned_program(key, device, target, self.policy, self.tolerance, self.max_pulses)


def save_policy(path: str | Path, policy: ProgrammingPolicy, info: PolicyInfo) -> None:
    """One file: a magic line, a JSON header line (`PolicyInfo`), then the Equinox leaves."""
    from ..runs import atomic_write_bytes

    buf = io.BytesIO()
    eqx.tree_serialise_leaves(buf, policy)
    header = json.dumps(dataclasses.asdict(info), sort_keys=True).encode()
    atomic_write_bytes(Path(path), _MAGIC + header + b"\n" + buf.getvalue())


def load_policy(path: str | Path) -> tuple[ProgrammingPolicy, PolicyInfo]:
    """The policy in `path` and what it was trained for; one-line errors for other files."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise UserInputError(f"{path}: is a folder, not a policy file") from None
    except OSError as err:
        raise UserInputError(f"{path}: cannot read the policy: {err.strerror}") from None
    if not data.startswith(_MAGIC) or b"\n" not in data[len(_MAGIC) :]:
        raise UserInputError(f"{path}: not a programming-policy file (write one with `pcmmeta learn-programming`)")
    header, leaves = data[len(_MAGIC) :].split(b"\n", 1)
    try:
        fields = json.loads(header)
        info = PolicyInfo(**fields)
    except (ValueError, TypeError):
        raise UserInputError(f"{path}: damaged policy header; train it again with `pcmmeta learn-programming`") from None
    if info.format != POLICY_FORMAT:
        raise UserInputError(f"{path}: policy format {info.format}, this pcmmeta reads format {POLICY_FORMAT}")
    like = ProgrammingPolicy(jax.random.key(0), info.width, info.depth)
    try:
        policy = eqx.tree_deserialise_leaves(io.BytesIO(leaves), like)
    except Exception:  # numpy/equinox raise several kinds for a truncated file
        raise UserInputError(f"{path}: damaged policy (truncated?); train it again with `pcmmeta learn-programming`") from None
    return policy, info


def check_policy_fits(path: str | Path, info: PolicyInfo, device: PCMDevice, tolerance: float, max_pulses: int) -> None:
    """Refuse a policy trained for other device parameters, tolerance or budget (one line)."""
    if info.device_fingerprint != device_fingerprint(device):
        raise UserInputError(
            f"{path}: trained for device {info.device_name!r} (parameters {info.device_fingerprint}), not for "
            f"{device.name!r} ({device_fingerprint(device)}); train one with `pcmmeta learn-programming --device …` or pass --force-policy"
        )
    if info.tolerance_uS != tolerance or info.max_pulses != max_pulses:
        raise UserInputError(
            f"{path}: trained for --tolerance {info.tolerance_uS} --max-pulses {info.max_pulses}, asked for "
            f"{tolerance} and {max_pulses}; train one for these or pass --force-policy"
        )


def cached_policy_path(device: PCMDevice, tolerance: float, max_pulses: int, cost: ProgrammingCost, cache_dir: Path) -> Path:
    """Where the policy for this device, tolerance, budget and cost model is cached."""
    cost_hash = hashlib.sha256(json.dumps(cost.to_dict(), sort_keys=True).encode()).hexdigest()[:8]
    return Path(cache_dir) / "policies" / f"{device_fingerprint(device)}-tol{tolerance!r}-b{max_pulses}-c{cost_hash}.policy"


# ----------------------------------------------------------------------------------- training
@dataclasses.dataclass(frozen=True)
class PolicyTraining:
    """Settings of `train_policy` (evolution strategies on the programming simulation)."""

    iterations: int = 300
    batch: int = 1024  # targets per iteration (the same for every perturbation: common random numbers)
    population: int = 16  # perturbations per iteration, antithetic pairs
    sigma: float = 0.2  # perturbation scale in parameter space
    learning_rate: float = 0.05
    error_weight: float = 0.3  # per (final error / tolerance)², in units of write-verify's mean time
    error_cap: float = 100.0  # the largest (error / tolerance)² counted
    miss_weight: float = 1.2  # per device left outside tolerance, in the same units
    width: int = 16
    depth: int = 2


def programming_objective(
    policy: ProgrammingPolicy, key, device, target, tolerance, max_pulses, cost: ProgrammingCost, time_unit, settings: PolicyTraining
) -> Float[Array, ""]:
    """Mean per-device cost: time / time_unit + error and miss penalties (lower is better)."""
    result = learned_program(key, device, target, policy, tolerance, max_pulses)
    err = result.state.g_prog - target
    within = jnp.abs(err) <= tolerance
    per_device = (
        counts_time(cost, result) / time_unit
        + settings.error_weight * jnp.minimum((err / tolerance) ** 2, settings.error_cap)
        + settings.miss_weight * (~within)
    )
    return jnp.mean(per_device)


def sample_targets(key: PRNGKeyArray, device: PCMDevice, n: int, pool: Float[Array, " m"] | None = None) -> Float[Array, " n"]:
    """Targets (µS): uniform over [g_min, g_max], or drawn from `pool` (a trained run's conductances)."""
    if pool is None:
        return jax.random.uniform(key, (n,), minval=device.g_min, maxval=device.g_max)
    return jax.random.choice(key, pool, (n,))


def train_policy(
    key: PRNGKeyArray,
    device: PCMDevice,
    tolerance: float = 0.5,
    max_pulses: int = 100,
    cost: ProgrammingCost = ProgrammingCost(),
    settings: PolicyTraining = PolicyTraining(),
    pool: Float[Array, " m"] | None = None,
    on_iteration: Callable[[int, float], None] | None = None,
) -> tuple[ProgrammingPolicy, list[float]]:
    """Evolution strategies on `programming_objective`; returns the policy and the objective per
    iteration (at the unperturbed parameters' batch, in units of write-verify's mean time)."""
    k_init, k_loop = jax.random.split(key)
    params, static = eqx.partition(ProgrammingPolicy(k_init, settings.width, settings.depth), eqx.is_inexact_array)
    theta, unravel_params = ravel_pytree(params)

    def unravel(theta):
        return eqx.combine(unravel_params(theta), static)

    opt = optax.adam(settings.learning_rate)
    opt_state = opt.init(theta)
    half = settings.population // 2

    @jax.jit
    def step(theta, opt_state, key):
        k_targets, k_prog, k_noise = jax.random.split(key, 3)
        target = sample_targets(k_targets, device, settings.batch, pool)
        wv = write_verify(k_prog, device, target, tolerance, max_pulses)
        time_unit = jnp.mean(counts_time(cost, wv))
        eps = jax.random.normal(k_noise, (half, theta.size))
        thetas = jnp.concatenate([theta + settings.sigma * eps, theta - settings.sigma * eps, theta[None]])

        def objective(t):
            return programming_objective(unravel(t), k_prog, device, target, tolerance, max_pulses, cost, time_unit, settings)

        values = jax.lax.map(objective, thetas)
        perturbed, centre = values[:-1], values[-1]
        ranks = jnp.argsort(jnp.argsort(perturbed)).astype(jnp.float32)
        shaped = ranks / (perturbed.size - 1) - 0.5  # centred ranks: robust to outliers
        grad = (shaped[:half] - shaped[half:]) @ eps / (settings.population * settings.sigma)
        updates, opt_state = opt.update(grad, opt_state, theta)
        return optax.apply_updates(theta, updates), opt_state, centre

    history = []
    for i in range(settings.iterations):
        theta, opt_state, value = step(theta, opt_state, jax.random.fold_in(k_loop, i))
        history.append(float(value))
        if on_iteration is not None:
            on_iteration(i, history[-1])
    return unravel(theta), history



def obtain_policy(
    device: PCMDevice,
    tolerance: float,
    max_pulses: int,
    cost: ProgrammingCost = ProgrammingCost(),
    path: str | Path | None = None,
    force: bool = False,
    cache_dir: Path | None = None,
    train: Callable[[], tuple[ProgrammingPolicy, PolicyInfo]] | None = None,
) -> tuple[ProgrammingPolicy, PolicyInfo, Path, bool]:
    """The policy for this device, tolerance and budget: from `path` (checked unless `force`),
    else from the cache, else trained by `train()` and cached. Returns (policy, info, the file,
    whether it was trained now)."""
    if path is not None:
        policy, info = load_policy(path)
        if not force:
            check_policy_fits(path, info, device, tolerance, max_pulses)
        return policy, info, Path(path), False
    if cache_dir is None:
        from ..imagedata import default_cache_dir

        cache_dir = default_cache_dir()
    cached = cached_policy_path(device, tolerance, max_pulses, cost, cache_dir)
    if cached.is_file():
        policy, info = load_policy(cached)
        check_policy_fits(cached, info, device, tolerance, max_pulses)
        return policy, info, cached, False
    if train is None:
        raise UserInputError(f"no programming policy for device {device.name!r} in {cached.parent}; run `pcmmeta learn-programming` first")
    policy, info = train()
    cached.parent.mkdir(parents=True, exist_ok=True)
    save_policy(cached, policy, info)
    return policy, info, cached, True


def learn_policy(
    key: PRNGKeyArray,
    device: PCMDevice,
    tolerance: float = 0.5,
    max_pulses: int = 100,
    cost: ProgrammingCost = ProgrammingCost(),
    settings: PolicyTraining = PolicyTraining(),
    pool: Float[Array, " m"] | None = None,
    targets_label: str = "uniform",
    seed: int = 0,
    on_iteration: Callable[[int, float], None] | None = None,
) -> tuple[ProgrammingPolicy, PolicyInfo, list[float]]:
    """`train_policy` plus the `PolicyInfo` that goes into the policy file."""
    policy, history = train_policy(key, device, tolerance, max_pulses, cost, settings, pool, on_iteration)
    info = PolicyInfo(
        device_name=device.name, device_fingerprint=device_fingerprint(device), tolerance_uS=float(tolerance),
        max_pulses=int(max_pulses), cost=cost.to_dict(), width=settings.width, depth=settings.depth,
        targets=targets_label, iterations=settings.iterations, seed=seed,
    )
    return policy, info, history
