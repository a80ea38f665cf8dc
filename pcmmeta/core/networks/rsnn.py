"""`rsnn`: a recurrent LIF network on PCM (the trainee) and a learning-signal generator off chip
(Ortner et al., Nat. Commun. 16, 2025, robot arm; e-prop from Bellec et al., Nat. Commun. 11, 2020).

Trainee, per step t (dt each; α = exp(−dt/τ_mem), κ = exp(−dt/τ_out)):

    v_t = α v_{t−1} + W_in x_t + W_rec z_{t−1} − θ z_{t−1}        (reset by subtraction)
    z_t = H(v_t − θ), forced to 0 for `refractory` steps after a spike
    y_t = κ y_{t−1} + (1 − κ) W_out z_t                           (leaky readout: the output)

Layers on PCM pairs: `in` (clock × neurons) and `rec` (neurons × neurons, no self-connections)
are the head — the one on-chip update touches them —, `out` (neurons × outputs) is the body,
programmed once. The input is the task family's clock, the same for every task, so a task
reaches the trainee only through the update.

Learning-signal generator (LSG), in float, off chip: a recurrent network of LIF and adaptive-
threshold (ALIF) neurons reading the clock and the demonstration's spikes; its leaky readout
gives one learning signal L_j(t) per trainee neuron and step. The e-prop update is
ΔW_ij = −η Σ_t L_j(t) e_ij(t) with eligibility traces e_ij(t) = ψ_j(t) x̄_i(t): the pseudo-
derivative ψ_j(t) (the spike surrogate at v_j(t), 0 while refractory) times the presynaptic
input filtered with the membrane's decay, x̄_t = α x̄_{t−1} + x_t (for `rec`, of z_{t−1}).
`eprop_direction` returns G = Σ_t x̄(t)ᵀ (L(t) ⊙ ψ(t)), so ΔW = −η G; the inner rule
`eprop-lsg` turns it into SET pulses. The LSG's weights are trained by the outer loop like the
conductances but never programmed (`offchip`).

A network's features are, here, what the head needs besides its own weights: the clock and the
readout's weights (the adapted layers come first in this network, so nothing is precomputed).
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from pcmmeta.core.crossbar import pairs_around
from pcmmeta.core.devices import AbstractPCMDevice
from pcmmeta.core.fields import hyperparameter, hyperparameter_group
from pcmmeta.core.networks.base import AbstractNetwork
from pcmmeta.core.snn import spike, surrogate_derivative


class RecurrentLIF(eqx.Module):
    """Dynamics constants of a recurrent LIF population (s; threshold in membrane units)."""

    dt: float = hyperparameter(1e-3, "float", "time step, s", positive=True)
    tau_mem: float = hyperparameter(2e-2, "float", "membrane time constant (trainee and LSG), s", positive=True)
    tau_out: float = hyperparameter(2e-2, "float", "readout time constant (trainee and LSG), s", positive=True)
    threshold: float = hyperparameter(0.6, "float", "spike threshold", positive=True)
    refractory: int = hyperparameter(5, "int", "refractory period, steps", low=0, high=1000)
    surrogate_beta: float = hyperparameter(
        3.0, "float", "β of the spike surrogate and pseudo-derivative 1/(β|v−θ|+1)²", positive=True
    )

    @property
    def membrane_decay(self) -> float:
        return math.exp(-self.dt / self.tau_mem)

    @property
    def kappa(self) -> float:
        return math.exp(-self.dt / self.tau_out)


class TraineeRun(eqx.Module):
    """One run of the trainee on one input sequence."""

    spikes: Float[Array, "time neurons"]  # z_t
    pseudo: Float[Array, "time neurons"]  # ψ_t: surrogate derivative, 0 while refractory
    input_trace: Float[Array, "time inputs"]  # x̄_t
    recurrent_trace: Float[Array, "time neurons"]  # z̄ of z_{t−1}


def run_trainee(
    cfg: RecurrentLIF,
    w_in: Float[Array, "inputs neurons"],
    w_rec: Float[Array, "neurons neurons"],
    x: Float[Array, "time inputs"],
) -> TraineeRun:
    """The trainee's spikes and what e-prop needs, for one input sequence."""
    alpha, theta = cfg.membrane_decay, cfg.threshold
    n = w_rec.shape[0]
    w_rec = w_rec * (1.0 - jnp.eye(n, dtype=w_rec.dtype))  # no self-connections

    def step(carry, x_t):
        v, z, refractory, x_bar, z_bar = carry
        v = alpha * v + x_t @ w_in + z @ w_rec - theta * z
        free = (refractory == 0).astype(v.dtype)
        z_new = spike(v - theta, cfg.surrogate_beta) * free
        psi = surrogate_derivative(v - theta, cfg.surrogate_beta) * free
        refractory = jnp.where(z_new > 0, cfg.refractory, jnp.maximum(refractory - 1, 0))
        x_bar = alpha * x_bar + x_t
        z_bar = alpha * z_bar + z
        return (v, z_new, refractory, x_bar, z_bar), (z_new, psi, x_bar, z_bar)

    init = (jnp.zeros(n), jnp.zeros(n), jnp.zeros(n, jnp.int32), jnp.zeros(x.shape[-1]), jnp.zeros(n))
    _, (z, psi, x_bar, z_bar) = jax.lax.scan(step, init, x)
    return TraineeRun(z, psi, x_bar, z_bar)


def leaky_readout(kappa: float, signal: Float[Array, "time channels"]) -> Float[Array, "time channels"]:
    """y_t = κ y_{t−1} + (1 − κ) s_t."""

    def step(y, s):
        y = kappa * y + (1.0 - kappa) * s
        return y, y

    return jax.lax.scan(step, jnp.zeros(signal.shape[-1], signal.dtype), signal)[1]


def eprop_gradient(run: TraineeRun, learning_signal: Float[Array, "time neurons"]) -> dict[str, Array]:
    """G = Σ_t x̄(t)ᵀ (L(t) ⊙ ψ(t)) for the input and recurrent weights (ΔW = −η G). The
    recurrent diagonal is 0: the trainee has no self-connections (`run_trainee` masks them), so
    an update there would pulse devices that carry no weight."""
    lp = learning_signal * run.pseudo
    rec = run.recurrent_trace.T @ lp
    return {"in": run.input_trace.T @ lp, "rec": rec * (1.0 - jnp.eye(rec.shape[0], dtype=rec.dtype))}


class LearningSignalGenerator(eqx.Module):
    """An off-chip recurrent network of LIF and ALIF neurons (the first `n_adaptive` adapt their
    threshold: A_t = θ + β a_t, a_t = ρ a_{t−1} + z_{t−1}, ρ = exp(−dt/τ_a)) with a leaky
    readout of one learning signal per trainee neuron."""

    w_in: Float[Array, "inputs neurons"]
    w_rec: Float[Array, "neurons neurons"]
    w_out: Float[Array, "neurons trainee"]
    cfg: RecurrentLIF
    n_adaptive: int = eqx.field(static=True)
    tau_adapt: float = eqx.field(static=True)  # s
    beta_adapt: float = eqx.field(static=True)

    @classmethod
    def init(
        cls,
        key: PRNGKeyArray,
        n_inputs: int,
        n_neurons: int,
        n_signals: int,
        cfg: RecurrentLIF,
        adaptive_fraction: float,
        tau_adapt: float,
        beta_adapt: float,
    ) -> "LearningSignalGenerator":
        k1, k2, k3 = jax.random.split(key, 3)
        return cls(
            w_in=jax.random.normal(k1, (n_inputs, n_neurons)) / math.sqrt(n_inputs),
            w_rec=jax.random.normal(k2, (n_neurons, n_neurons)) / math.sqrt(n_neurons),
            w_out=jax.random.normal(k3, (n_neurons, n_signals)) / math.sqrt(n_neurons),
            cfg=cfg,
            n_adaptive=int(round(adaptive_fraction * n_neurons)),
            tau_adapt=tau_adapt,
            beta_adapt=beta_adapt,
        )

    def __call__(
        self, u: Float[Array, "time inputs"]
    ) -> tuple[Float[Array, "time trainee"], Float[Array, "time neurons"]]:
        cfg = self.cfg
        alpha, theta = cfg.membrane_decay, cfg.threshold
        rho = math.exp(-cfg.dt / self.tau_adapt)
        n = self.w_rec.shape[0]
        beta = jnp.where(jnp.arange(n) < self.n_adaptive, self.beta_adapt, 0.0)
        w_rec = self.w_rec * (1.0 - jnp.eye(n, dtype=self.w_rec.dtype))
        current = u @ self.w_in  # (time, neurons): the input part of every step at once

        def step(carry, c_t):
            v, z, a, refractory = carry
            a = rho * a + z
            threshold = theta + beta * a
            v = alpha * v + c_t + z @ w_rec - threshold * z
            free = (refractory == 0).astype(v.dtype)
            z_new = spike(v - threshold, cfg.surrogate_beta) * free
            refractory = jnp.where(z_new > 0, cfg.refractory, jnp.maximum(refractory - 1, 0))
            return (v, z_new, a, refractory), z_new

        init = (jnp.zeros(n), jnp.zeros(n), jnp.zeros(n), jnp.zeros(n, jnp.int32))
        _, z = jax.lax.scan(step, init, current)
        return leaky_readout(cfg.kappa, z @ self.w_out), z


class ArmFeatures(eqx.Module):
    """What the head needs besides its own weights, for one task's set."""

    clock: Float[Array, "samples time inputs"]
    w_out: Float[Array, "neurons outputs"]


class RecurrentSNNArchitecture(eqx.Module):
    """The `network:` section of `rsnn`: the trainee's size and dynamics, its layers' weight
    scales, the learning-signal generator, the spike-rate regulariser."""

    neurons: int = hyperparameter(250, "int", "trainee neurons (Ortner: 250)", low=1, high=100_000)
    dynamics: RecurrentLIF = hyperparameter_group(RecurrentLIF)
    scale_in: float = hyperparameter(2.0, "float", "weight of a full-range pair, input layer", positive=True)
    scale_rec: float = hyperparameter(0.5, "float", "weight of a full-range pair, recurrent layer", positive=True)
    scale_out: float = hyperparameter(4.0, "float", "weight of a full-range pair, readout", positive=True)
    init_conductance: float = hyperparameter(3.0, "float", "µS around which pairs are initialised", positive=True)
    lsg_neurons: int = hyperparameter(
        800, "int", "learning-signal generator neurons (Ortner: 800)", low=1, high=100_000
    )
    lsg_adaptive_fraction: float = hyperparameter(
        0.3, "float", "share of LSG neurons with adaptive thresholds (Ortner: 0.3)", low=0.0, high=1.0
    )
    lsg_tau_adapt: float = hyperparameter(
        0.6, "float", "LSG threshold adaptation time constant, s (Ortner: 0.6)", positive=True
    )
    lsg_beta_adapt: float = hyperparameter(1.6, "float", "LSG threshold adaptation strength (Ortner: 1.6)", low=0.0)
    rate_target_hz: float = hyperparameter(
        15.0, "float", "spike-rate regularisation: target rate of trainee neurons, Hz (Ortner: 10–20)", low=0.0
    )
    rate_regularization: float = hyperparameter(
        0.5, "float", "spike-rate regularisation: weight λ of Σ_j (rate_j − target)² (rates per step)", low=0.0
    )


class RecurrentSNN(AbstractNetwork):
    architecture_class = RecurrentSNNArchitecture
    kind = "rsnn"
    reads = frozenset({"clock"})  # a clock, and a demonstration (`encode_target`) to learn from
    provides = frozenset({"learning-signal"})  # `eprop_direction`
    shows_spikes = True

    layers: dict[str, Float[Array, "2 ..."]]
    lsg: LearningSignalGenerator  # off chip, float: trained by the outer loop, never programmed
    scale_items: tuple[tuple[str, float], ...] = eqx.field(static=True)
    cfg: RecurrentLIF
    rate_target: float = eqx.field(static=True)  # spikes per step
    rate_regularization: float = eqx.field(static=True)
    layer_names: tuple[str, ...] = eqx.field(static=True)
    head: tuple[str, ...] = eqx.field(static=True)

    @classmethod
    def init(
        cls, key: PRNGKeyArray, architecture: RecurrentSNNArchitecture, family, device: AbstractPCMDevice
    ) -> "RecurrentSNN":
        channels = int(family.encode(jnp.zeros((1, 1))).shape[-1])
        n, n_out = architecture.neurons, family.n_outputs
        cfg = architecture.dynamics
        scales = {"in": architecture.scale_in, "rec": architecture.scale_rec, "out": architecture.scale_out}
        k_in, k_rec, k_out, k_lsg = jax.random.split(key, 4)

        def pair(k, shape, scale, std):
            w = jnp.clip(std * jax.random.normal(k, shape), -scale, scale)
            return pairs_around(w, device, scale, architecture.init_conductance)

        layers = {
            "in": pair(k_in, (channels, n), scales["in"], 1.0 / math.sqrt(channels)),
            "rec": pair(k_rec, (n, n), scales["rec"], 1.0 / math.sqrt(n)),
            "out": pair(k_out, (n, n_out), scales["out"], 2.0 / math.sqrt(n)),
        }
        lsg = LearningSignalGenerator.init(
            k_lsg,
            n_inputs=channels + family.target_channels,
            n_neurons=architecture.lsg_neurons,
            n_signals=n,
            cfg=cfg,
            adaptive_fraction=architecture.lsg_adaptive_fraction,
            tau_adapt=architecture.lsg_tau_adapt,
            beta_adapt=architecture.lsg_beta_adapt,
        )
        return cls(
            layers=layers,
            lsg=lsg,
            scale_items=tuple(scales.items()),
            cfg=cfg,
            layer_names=("in", "rec", "out"),
            head=("in", "rec"),
            rate_target=architecture.rate_target_hz * cfg.dt,
            rate_regularization=architecture.rate_regularization,
        )

    def activation_bytes(self, family, support: int, query: int, tasks: int, backward: bool) -> int:
        """Per task and step: three trainee runs (e-prop's, before and after the update), each
        keeping about 8 floats per neuron for autodiff (membrane, spikes, pseudo-derivative,
        traces, refractory state), the generator's run (about 8 per neuron) and the e-prop
        products (4 per trainee neuron); forward only, a quarter of that. With the default overhead
        (2.0) the estimate was 1.19× the measured peak RSS of two training steps of arm.yaml
        (2.04 / 1.72 GB) and 1.03× that of arm-15min.yaml (0.94 / 0.92 GB)."""
        n, m = self.layers["rec"].shape[-1], self.lsg.w_rec.shape[0]  # trainee and generator neurons
        per_step = 3 * 8 * n + 8 * m + 4 * n
        steps = getattr(family, "time_steps", 1)
        samples = max(support, query)  # support and query are the same demonstration
        total = 4 * steps * samples * tasks * per_step
        return total if backward else total // 4

    # ------------------------------------------------------------------ the pipeline's calls
    def features(self, weights, x: Float[Array, "samples time inputs"]) -> ArmFeatures:
        return ArmFeatures(x, weights["out"])

    def _runs(self, weights, features: ArmFeatures):
        runs = jax.vmap(lambda x: run_trainee(self.cfg, weights["in"], weights["rec"], x))(features.clock)
        out = jax.vmap(lambda z: leaky_readout(self.cfg.kappa, z @ features.w_out))(runs.spikes)
        return out, runs

    def head_output(self, weights, features: ArmFeatures) -> Float[Array, "samples time outputs"]:
        return self._runs(weights, features)[0]

    def head_output_and_penalty(self, weights, features):
        """The output and the spike-rate regulariser λ Σ_j (mean_t z_j − target)²."""
        out, runs = self._runs(weights, features)
        rates = jnp.mean(runs.spikes, axis=(0, 1))
        return out, self.rate_regularization * jnp.sum((rates - self.rate_target) ** 2)

    def spike_raster(self, weights, features: ArmFeatures) -> Float[Array, "time neurons"]:
        """The trainee's spikes on the first sample (for figures)."""
        return run_trainee(self.cfg, weights["in"], weights["rec"], features.clock[0]).spikes

    def eprop_direction(
        self, weights, features: ArmFeatures, y: Float[Array, "samples time outputs"], family
    ) -> dict[str, Array]:
        """G per head layer (ΔW = −η G): the trainee runs the demonstration's clock once; the
        LSG reads the clock and the demonstration; signals and traces are summed over samples."""

        def one(x, target):
            run = run_trainee(self.cfg, weights["in"], weights["rec"], x)
            signals, _ = self.lsg(jnp.concatenate([x, family.encode_target(target)], -1))
            return eprop_gradient(run, signals)

        return jax.tree.map(lambda g: g.sum(0), jax.vmap(one)(features.clock, y))
