"""NIR export of the spiking networks: the graph a chip read gives, for other simulators.

The Neuromorphic Intermediate Representation (`nir`) describes a network as continuous-time
nodes joined by edges; pcmmeta's networks step in discrete time. The export is exact under one
stated discretisation (also in the graph's metadata, `discretisation`): the graph steps every
`dt` seconds; a signal is held for one step; a leaky integrator (nir.LI) is integrated exactly,
v_t = d v_{t−1} + (1 − d)(v_leak + R I_t) with d = exp(−dt/τ); an edge that closes a loop
carries the previous step's value, every other edge the same step's. An importer that steps
forward Euler (d = 1 − dt/τ) reproduces it with τ_euler = dt/(1 − d): every leaky node's
metadata holds `decay` (d) and `dt` for that.

What maps to what (docs/nir.md has the table):

- a crossbar layer → nir.Linear of its effective weights W = scale·(G⁺ − G⁻)/(g_max − g_min)
  (one read of the chip, passed in), transposed to NIR's (outputs × inputs); with a constant-1
  input channel (`bias_channel`), nir.Affine whose bias is that channel's row;
- an LIF population with subtractive reset → nir.LI (membrane, τ_mem, R = 1/(1 − d), so that
  v_t = d v_{t−1} + I_t as in pcmmeta) + nir.Threshold (θ, spike when v > θ) + nir.Scale (the
  reset, a loop from the spikes back to the membrane). nir.LIF resets *to* a potential
  (`v_reset`); pcmmeta subtracts θ, which keeps the overshoot, so nir.LIF would change the
  spikes. `lif`'s membrane node holds the pre-reset membrane m_t = d v_{t−1} + I_t, whose reset
  reaches the next step decayed: loop weight −d·θ; `rsnn` subtracts θ z_{t−1} at the next step
  itself: loop weight −θ;
- the leaky readout → nir.Linear (W_out) + nir.LI (τ_out, R = 1): y_t = κ y_{t−1} + (1 − κ) W_out z_t
  (for `lif`, W_out applied to the trace z_t = κ z_{t−1} + (1 − κ) s_t: the same, as it is linear);
- `rsnn`'s recurrent crossbar → nir.Linear with a zero diagonal (the simulation masks it);
- refractoriness (`rsnn`: spikes forced to 0 for `refractory` steps after one, the membrane
  still integrating) has no NIR node: it is the Threshold node's metadata `refractory_steps`.

Not in the graph: read noise, drift and programming errors (the weights are one read of the
chip at one time), the spike surrogate (training only), `rsnn`'s learning-signal generator and
e-prop update (off chip, the on-chip update, not the network's forward pass).
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import nir
import numpy as np

from pcmmeta.core.networks.base import AbstractNetwork
from pcmmeta.core.networks.lif import LIFNetwork
from pcmmeta.core.networks.rsnn import RecurrentSNN
from pcmmeta.errors import UserInputError
from pcmmeta.io.runs import atomic_write_bytes

DISCRETISATION = (
    "step every dt seconds; signals held for one step; LI integrated exactly: "
    "v_t = d v_{t-1} + (1 - d)(v_leak + R I_t), d = exp(-dt/tau) (node metadata 'decay'); "
    "edges that close a loop carry the previous step's value, other edges the same step's; "
    "Threshold: z_t = 1 if v_t > threshold, forced to 0 for 'refractory_steps' steps after a spike"
)

NOT_EXPRESSED = (
    "refractoriness (Threshold metadata 'refractory_steps'); PCM read noise, drift and programming "
    "errors (the weights are one read of the chip); the surrogate gradient; rsnn's learning-signal "
    "generator and on-chip update"
)

Edges = list[tuple[str, str]]
Nodes = dict[str, nir.NIRNode]


def network_graph(
    network: AbstractNetwork,
    weights: dict[str, Any],
    dt_s: float | None = None,
    bias_channel: int | None = None,
) -> nir.NIRGraph:
    """The NIR graph of a spiking network (`lif` or `rsnn`) with the effective weights of one
    chip read (`weights`: per layer, as `pair_weights` gives them, (inputs × outputs)).

    `dt_s`: seconds per step of the exported graph (default the network's `dt`); the time
    constants are scaled with it, so the per-step decays — what the simulation uses — are the
    same on any time base. `bias_channel`: the index of an encoded input channel that is a
    constant 1 (the sinusoid family's last); its row of the `in` crossbar becomes the bias of a
    nir.Affine and the graph's input loses that channel. A network that does not spike is refused.
    """
    if isinstance(network, LIFNetwork):
        return _lif_graph(network, weights, dt_s, bias_channel)
    if isinstance(network, RecurrentSNN):
        return _rsnn_graph(network, weights, dt_s, bias_channel)
    kind = getattr(type(network), "kind", type(network).__name__)
    raise UserInputError(f"NIR export is for the spiking networks (lif, rsnn) only, not {kind!r}")


def write_nir(path: Path, graph: nir.NIRGraph) -> None:
    """`graph` as a NIR (HDF5) file, written atomically (temporary file beside it + rename); an
    unwritable path is an `OutputError` naming it."""
    buf = io.BytesIO()
    nir.write(buf, graph)
    atomic_write_bytes(Path(path), buf.getvalue())


# ----------------------------------------------------------------------------- the two networks
def _lif_graph(network: LIFNetwork, weights, dt_s: float | None, bias_channel: int | None) -> nir.NIRGraph:
    """input → in → LIF 1 → hidden → LIF 2 → out → readout → output (`pcmmeta/core/snn.py`)."""
    cfg = network.lif
    dt = _time_base(cfg.dt, dt_s)
    stretch = dt / cfg.dt  # τ in the exported time base (s) per τ of the network (s)
    d_mem, d_out = cfg.membrane_decay, cfg.readout_decay
    w_in = _layer_weight(network, weights, "in")  # (channels, hidden1)
    w_hidden = _layer_weight(network, weights, "hidden")  # (hidden1, hidden2)
    w_out = _layer_weight(network, weights, "out")  # (hidden2, outputs) or (hidden2,)
    if w_out.ndim == 1:
        w_out = w_out[:, None]  # one output: the simulation's (time, samples) is (time, samples, 1) here
    h1, h2, n_out = w_hidden.shape[0], w_hidden.shape[1], w_out.shape[1]
    tau_mem, tau_out = cfg.tau_mem * stretch, cfg.tau_out * stretch

    nodes: Nodes = {}
    edges: Edges = []
    _add_input(nodes, edges, network, w_in, bias_channel, "the encoded input vector, the same at every step")
    edges.append(("in", "lif1_v"))
    # pre-reset membrane m_t = d m_{t−1} + I_t − d θ s_{t−1}: the reset reaches the next step decayed
    _add_lif(nodes, edges, "lif1", h1, tau_mem, d_mem, cfg.threshold, -d_mem * cfg.threshold, 0, dt)
    nodes["hidden"] = _crossbar(network, "hidden", w_hidden)
    edges += [("lif1_z", "hidden"), ("hidden", "lif2_v")]
    _add_lif(nodes, edges, "lif2", h2, tau_mem, d_mem, cfg.threshold, -d_mem * cfg.threshold, 0, dt)
    nodes["out"] = _crossbar(network, "out", w_out)
    edges.append(("lif2_z", "out"))
    _add_readout(nodes, edges, n_out, tau_out, d_out, dt)
    meta = _graph_metadata(network, dt)
    meta["time_steps"] = int(cfg.time_steps)  # steps per input; the family scores every step's output
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta)


def _rsnn_graph(network: RecurrentSNN, weights, dt_s: float | None, bias_channel: int | None) -> nir.NIRGraph:
    """input → in → LIF ⟲ rec → out → readout → output (`pcmmeta/core/networks/rsnn.py`)."""
    cfg = network.cfg
    dt = _time_base(cfg.dt, dt_s)
    stretch = dt / cfg.dt
    w_in = _layer_weight(network, weights, "in")  # (clock, neurons)
    w_rec = _layer_weight(network, weights, "rec")  # (neurons, neurons)
    w_out = _layer_weight(network, weights, "out")  # (neurons, outputs)
    n, n_out = w_rec.shape[0], w_out.shape[1]
    w_rec = w_rec * (1 - np.eye(n, dtype=w_rec.dtype))  # no self-connections, as `run_trainee` masks them

    nodes: Nodes = {}
    edges: Edges = []
    _add_input(nodes, edges, network, w_in, bias_channel, "the task family's clock, one vector per step")
    edges.append(("in", "lif_v"))
    # v_t = d v_{t−1} + W_in x_t + W_rec z_{t−1} − θ z_{t−1}: the reset is a loop like `rec`
    tau_mem = cfg.tau_mem * stretch
    _add_lif(nodes, edges, "lif", n, tau_mem, cfg.membrane_decay, cfg.threshold, -cfg.threshold, cfg.refractory, dt)
    nodes["rec"] = _crossbar(network, "rec", w_rec, diagonal="zero: no self-connections")
    edges += [("lif_z", "rec"), ("rec", "lif_v")]
    nodes["out"] = _crossbar(network, "out", w_out)
    edges.append(("lif_z", "out"))
    _add_readout(nodes, edges, n_out, cfg.tau_out * stretch, cfg.kappa, dt)
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=_graph_metadata(network, dt))


# ----------------------------------------------------------------------------- pieces
def _time_base(dt_network: float, dt_s: float | None) -> float:
    """Seconds per step of the exported graph."""
    if dt_s is None:
        return float(dt_network)
    try:
        dt = float(dt_s)
    except (TypeError, ValueError):
        dt = math.nan
    if not (math.isfinite(dt) and dt > 0):
        raise UserInputError(f"NIR export: dt must be a positive number of seconds, not {dt_s!r}")
    return dt


def _layer_weight(network: AbstractNetwork, weights, name: str) -> np.ndarray:
    """The effective weights of layer `name` (inputs × outputs, dimensionless), checked against
    the network's crossbar."""
    if name not in weights:
        raise UserInputError(f"NIR export: no weights for layer {name!r}")
    w = np.asarray(weights[name])
    expected = tuple(network.layers[name].shape[1:])  # layers are (2, …): [G⁺, G⁻]
    if w.shape != expected:
        raise UserInputError(f"NIR export: weights of layer {name!r} are {w.shape}, the network's are {expected}")
    if not np.all(np.isfinite(w)):
        raise UserInputError(f"NIR export: weights of layer {name!r} are not all finite")
    return w


def _crossbar(network: AbstractNetwork, name: str, w: np.ndarray, **extra: str) -> nir.Linear:
    """nir.Linear y = W x of a crossbar layer's weights w (inputs × outputs)."""
    return nir.Linear(weight=np.ascontiguousarray(w.T), metadata=_crossbar_metadata(network, name, extra))


def _crossbar_metadata(network: AbstractNetwork, name: str, extra: dict[str, str]) -> dict[str, Any]:
    return {
        "pcmmeta_layer": name,
        "adapted_on_chip": name in network.head,
        "full_range_weight": float(network.scales[name]),  # the weight of a pair with G⁺ = g_max, G⁻ = g_min
        "weights": "scale (G+ - G-) / (g_max - g_min) of one chip read, (outputs, inputs)",
        **extra,
    }


def _add_input(
    nodes: Nodes, edges: Edges, network: AbstractNetwork, w_in: np.ndarray, bias_channel: int | None, what: str
) -> None:
    """The graph's input and the `in` crossbar (Linear, or Affine with a bias channel)."""
    channels = w_in.shape[0]
    if bias_channel is None:
        nodes["in"] = _crossbar(network, "in", w_in)
        n_in, encoding = channels, what
    else:
        k = _channel_index(bias_channel, channels)
        rest = np.delete(w_in, k, axis=0)  # (channels − 1, hidden)
        meta = _crossbar_metadata(network, "in", {"bias": f"row {k} of the crossbar, driven by a constant 1"})
        nodes["in"] = nir.Affine(weight=np.ascontiguousarray(rest.T), bias=w_in[k].copy(), metadata=meta)
        n_in, encoding = channels - 1, f"{what}, without channel {k} (a constant 1: the bias of 'in')"
    nodes["input"] = nir.Input(input_type=np.array([n_in]), metadata={"encoding": encoding})
    edges.append(("input", "in"))


def _channel_index(bias_channel: int, channels: int) -> int:
    if channels < 2 or not -channels <= bias_channel < channels:
        raise UserInputError(
            f"NIR export: bias channel {bias_channel} is not one of the {channels} input channels besides another"
        )
    return bias_channel % channels


def _add_lif(
    nodes: Nodes,
    edges: Edges,
    prefix: str,
    n: int,
    tau_s: float,
    decay: float,
    threshold: float,
    reset_weight: float,
    refractory_steps: int,
    dt: float,
) -> None:
    """`prefix`_v (nir.LI) → `prefix`_z (nir.Threshold) ⟲ `prefix`_reset (nir.Scale): an LIF
    population with subtractive reset. R = 1/(1 − d) makes the membrane's step v_t = d v_{t−1} + I_t."""
    role = "membrane of an LIF population with subtractive reset (with the Threshold and Scale nodes)"
    nodes[f"{prefix}_v"] = nir.LI(
        tau=np.full(n, tau_s),  # s
        r=np.full(n, 1.0 / (1.0 - decay)),
        v_leak=np.zeros(n),
        metadata=_leak_metadata(decay, dt, role),
    )
    nodes[f"{prefix}_z"] = nir.Threshold(
        threshold=np.full(n, float(threshold)),  # membrane units
        metadata={
            "refractory_steps": int(refractory_steps),  # spikes forced to 0 for this many steps after one
            "refractory_s": float(refractory_steps * dt),
        },
    )
    nodes[f"{prefix}_reset"] = nir.Scale(
        scale=np.full(n, float(reset_weight)),
        metadata={"role": "subtractive reset: the spikes of the previous step, fed back to the membrane"},
    )
    edges += [(f"{prefix}_v", f"{prefix}_z"), (f"{prefix}_z", f"{prefix}_reset"), (f"{prefix}_reset", f"{prefix}_v")]


def _add_readout(nodes: Nodes, edges: Edges, n_out: int, tau_s: float, decay: float, dt: float) -> None:
    """out → readout (nir.LI, R = 1: y_t = d y_{t−1} + (1 − d) W_out z_t) → output."""
    nodes["readout"] = nir.LI(
        tau=np.full(n_out, tau_s),  # s
        r=np.ones(n_out),
        v_leak=np.zeros(n_out),
        metadata=_leak_metadata(decay, dt, "leaky readout: the network's output"),
    )
    nodes["output"] = nir.Output(output_type=np.array([n_out]))
    edges += [("out", "readout"), ("readout", "output")]


def _leak_metadata(decay: float, dt: float, role: str) -> dict[str, Any]:
    return {"decay": float(decay), "dt": float(dt), "role": role}  # decay per step; dt in s


def _graph_metadata(network: AbstractNetwork, dt: float) -> dict[str, Any]:
    return {
        "source": "pcmmeta",
        "network": network.kind,
        "dt": float(dt),  # s per step
        "discretisation": DISCRETISATION,
        "not_expressed": NOT_EXPRESSED,
    }
