"""NIR export: the graph of `lif` and `rsnn` written and read back with `nir`, its parameters
against the network's, and — the proof of the mapping — a small NumPy stepper that knows only
NIR's nodes and the documented discretisation, run on the read-back graph, against pcmmeta's own
forward pass."""

import math

import jax.numpy as jnp
import nir
import numpy as np
import pytest
from test_arm import arm_recipe
from tiny import tiny_recipe

from pcmmeta.core.crossbar import pair_weights
from pcmmeta.core.networks.rsnn import run_trainee
from pcmmeta.errors import OutputError, UserInputError
from pcmmeta.experiment.recipe import validate
from pcmmeta.experiment.train import build_experiment, init_state, make_optimizer
from pcmmeta.io.nir_file import network_graph, write_nir


def lif_recipe():
    return tiny_recipe()


def cnn_recipe():
    return validate({
        "name": "tiny-cnn", "seed": 0, "mode": "pcm",
        "task": {"family": "images", "ways": 3, "shots": 2, "queries": 3, "glyph_classes": 30, "glyph_drawings": 6},
        "network": {"kind": "cnn", "channels": 4, "blocks": 2},
        "inner": {"rule": "quantized-sgd", "steps": 2, "lr": 0.5},
        "maml": {"quantized_bits": 4},
        "train": {"iterations": 3, "meta_batch": 4, "chunk_tasks": 2, "warmup": 0, "checkpoint_every": 3, "log_every": 1},
        "eval": {"tasks": 6, "plot_tasks": 1},
    })


def setup(recipe, gain=1.0):
    """The experiment, its network and effective weights (an ideal read of the initial pairs,
    times `gain` for a livelier network: the export must carry whatever weights it is given)."""
    exp = build_experiment(recipe)
    net = init_state(exp, make_optimizer(exp.train)).network
    device = exp.meta.device
    weights = {n: gain * np.asarray(pair_weights(net.layers[n], device, net.scales[n])) for n in net.layer_names}
    return exp, net, weights


@pytest.fixture(scope="module")
def lif():
    return setup(lif_recipe(), gain=2.0)


@pytest.fixture(scope="module")
def rsnn():
    return setup(arm_recipe(), gain=3.0)


def round_trip(graph, path):
    write_nir(path, graph)
    return nir.read(path)


# ----------------------------------------------------------------------------- a NIR stepper
def schedule(graph):
    """Nodes in evaluation order, and the edges that close a loop (depth-first from the input:
    an edge to a node still on the stack), which carry the previous step's value."""
    succ = {name: [b for a, b in graph.edges if a == name] for name in graph.nodes}
    post, loops, state = [], set(), {}

    def visit(a):
        state[a] = "open"
        for b in succ[a]:
            if state.get(b) == "open":
                loops.add((a, b))
            elif b not in state:
                visit(b)
        state[a] = "done"
        post.append(a)

    for name, node in graph.nodes.items():
        if isinstance(node, nir.Input):
            visit(name)
    return post[::-1], loops


def simulate(graph, x, trace=()):
    """Step the graph over x (time × inputs) with the discretisation docs/nir.md states: every
    node's output per step; LI integrated exactly over dt (the graph's metadata); loop edges
    delayed one step; Threshold's metadata `refractory_steps` honoured. Returns the output
    (time × outputs) and the outputs of the nodes named in `trace` (time × size each)."""
    order, loops = schedule(graph)
    dt = float(graph.metadata["dt"])
    pred = {name: [a for a, b in graph.edges if b == name] for name in graph.nodes}
    size = {name: int(np.prod(list(node.output_type.values())[0])) for name, node in graph.nodes.items()}
    prev = {name: np.zeros(size[name]) for name in graph.nodes}
    v = {name: np.zeros(size[name]) for name, node in graph.nodes.items() if isinstance(node, nir.LI)}
    blocked = {name: np.zeros(size[name], int) for name, node in graph.nodes.items() if isinstance(node, nir.Threshold)}
    outputs, traced = [], {name: [] for name in trace}
    for x_t in np.asarray(x, np.float64):
        now = {}
        for name in order:
            node = graph.nodes[name]
            if isinstance(node, nir.Input):
                now[name] = x_t
                continue
            i = sum((prev[a] if (a, name) in loops else now[a]) for a in pred[name])
            if isinstance(node, nir.Linear):
                now[name] = node.weight @ i
            elif isinstance(node, nir.Affine):
                now[name] = node.weight @ i + node.bias
            elif isinstance(node, nir.Scale):
                now[name] = node.scale * i
            elif isinstance(node, nir.LI):
                d = np.exp(-dt / node.tau)
                v[name] = d * v[name] + (1 - d) * (node.v_leak + node.r * i)
                now[name] = v[name]
            elif isinstance(node, nir.Threshold):
                z = ((i > node.threshold) & (blocked[name] == 0)).astype(float)
                blocked[name] = np.where(z > 0, int(node.metadata["refractory_steps"]), np.maximum(blocked[name] - 1, 0))
                now[name] = z
            elif isinstance(node, nir.Output):
                now[name] = i
            else:
                raise AssertionError(f"the stepper does not know {type(node).__name__}")
        outputs.append(sum(now[a] for a, b in graph.edges if isinstance(graph.nodes[b], nir.Output)))
        for name in trace:
            traced[name].append(now[name])
        prev = now
    return np.array(outputs), {k: np.array(t) for k, t in traced.items()}


# ----------------------------------------------------------------------------- lif
def lif_inputs(exp):
    return np.asarray(exp.family.encode(jnp.array([[-4.0], [-1.0], [0.5], [3.0]])))  # (samples, channels)


def lif_reference(net, weights, x):
    """pcmmeta's forward pass: the readout (time × samples × outputs) and layer 2's spikes,
    recovered from the trace z_t = κ z_{t−1} + (1 − κ) s_t."""
    w = {n: jnp.asarray(a) for n, a in weights.items()}
    z = np.asarray(net.features(w, jnp.asarray(x)), np.float64)  # (time, samples, hidden2)
    y = np.asarray(net.head_output(w, jnp.asarray(z, jnp.float32)))
    kappa = net.lif.readout_decay
    s = (z - kappa * np.concatenate([np.zeros_like(z[:1]), z[:-1]])) / (1 - kappa)
    assert np.allclose(s, np.round(s), atol=1e-4)
    return y.reshape(y.shape[0], y.shape[1], -1), np.round(s)


def test_lif_graph_round_trips_with_the_network_s_parameters(lif, tmp_path):
    exp, net, weights = lif
    graph = round_trip(network_graph(net, weights), tmp_path / "lif.nir")
    assert set(graph.nodes) == {
        "input", "in", "lif1_v", "lif1_z", "lif1_reset", "hidden", "lif2_v", "lif2_z", "lif2_reset", "out", "readout", "output",
    }
    assert sorted(graph.edges) == sorted([
        ("input", "in"), ("in", "lif1_v"), ("lif1_v", "lif1_z"), ("lif1_z", "lif1_reset"), ("lif1_reset", "lif1_v"),
        ("lif1_z", "hidden"), ("hidden", "lif2_v"), ("lif2_v", "lif2_z"), ("lif2_z", "lif2_reset"), ("lif2_reset", "lif2_v"),
        ("lif2_z", "out"), ("out", "readout"), ("readout", "output"),
    ])
    n = graph.nodes
    assert isinstance(n["in"], nir.Linear) and isinstance(n["lif1_v"], nir.LI) and isinstance(n["lif1_z"], nir.Threshold)
    # weights: exactly what was passed in, transposed to NIR's (outputs, inputs)
    assert n["in"].weight.dtype == weights["in"].dtype
    assert np.array_equal(n["in"].weight, weights["in"].T)
    assert np.array_equal(n["hidden"].weight, weights["hidden"].T)
    assert np.array_equal(n["out"].weight, weights["out"].reshape(len(weights["out"]), -1).T)
    cfg = net.lif
    for p in ("lif1", "lif2"):
        assert np.all(n[f"{p}_v"].tau == cfg.tau_mem) and np.all(n[f"{p}_z"].threshold == cfg.threshold)
        assert np.allclose(n[f"{p}_v"].r * (1 - cfg.membrane_decay), 1.0)
        assert np.allclose(n[f"{p}_reset"].scale, -cfg.membrane_decay * cfg.threshold)
        assert n[f"{p}_z"].metadata["refractory_steps"] == 0
    assert np.all(n["readout"].tau == cfg.tau_out) and np.all(n["readout"].r == 1.0)
    assert math.isclose(n["readout"].metadata["decay"], cfg.readout_decay)
    assert graph.metadata["dt"] == cfg.dt and graph.metadata["time_steps"] == cfg.time_steps
    assert graph.metadata["network"] == "lif"
    assert n["in"].metadata["pcmmeta_layer"] == "in" and bool(n["out"].metadata["adapted_on_chip"])


@pytest.mark.parametrize("dt_s", [None, 1e-6])
def test_lif_graph_steps_like_the_network(lif, tmp_path, dt_s):
    """The read-back graph (with the bias channel as an Affine's bias, and on another time base)
    gives pcmmeta's spikes exactly and its readout to float32 rounding; without the reset loop
    it would not (the comparison has teeth)."""
    exp, net, weights = lif
    graph = round_trip(network_graph(net, weights, dt_s=dt_s, bias_channel=-1), tmp_path / "lif.nir")
    affine = graph.nodes["in"]
    assert isinstance(affine, nir.Affine)
    assert np.array_equal(affine.weight, weights["in"][:-1].T) and np.array_equal(affine.bias, weights["in"][-1])
    x = lif_inputs(exp)
    assert np.all(x[:, -1] == 1.0)  # the sinusoid's last channel is the constant the bias replaces
    y_ref, s_ref = lif_reference(net, weights, x)
    steps = net.lif.time_steps
    for k in range(len(x)):
        y, traced = simulate(graph, np.repeat(x[None, k, :-1], steps, 0), trace=("lif1_z", "lif2_z"))
        assert np.array_equal(traced["lif2_z"], s_ref[:, k])
        np.testing.assert_allclose(y, y_ref[:, k], rtol=1e-5, atol=1e-6)
    all_x = np.repeat(x[:, None, :-1], steps, 1)
    spikes1 = sum(simulate(graph, xs, trace=("lif1_z",))[1]["lif1_z"].sum() for xs in all_x)
    assert 0 < s_ref.mean() < 0.9 and spikes1 > 0, "the check needs spiking, not saturated, layers"
    for p in ("lif1", "lif2"):
        graph.nodes[f"{p}_reset"].scale = np.zeros_like(graph.nodes[f"{p}_reset"].scale)
    changed = [not np.allclose(simulate(graph, xs)[0], y_ref[:, k], atol=1e-4) for k, xs in enumerate(all_x)]
    assert any(changed)


# ----------------------------------------------------------------------------- rsnn
def test_rsnn_graph_round_trips_and_steps_like_the_network(rsnn, tmp_path):
    exp, net, weights = rsnn
    assert np.any(np.diag(weights["rec"]) != 0)  # the crossbar's diagonal pairs carry something
    graph = round_trip(network_graph(net, weights), tmp_path / "rsnn.nir")
    assert set(graph.nodes) == {"input", "in", "lif_v", "lif_z", "lif_reset", "rec", "out", "readout", "output"}
    assert sorted(graph.edges) == sorted([
        ("input", "in"), ("in", "lif_v"), ("lif_v", "lif_z"), ("lif_z", "lif_reset"), ("lif_reset", "lif_v"),
        ("lif_z", "rec"), ("rec", "lif_v"), ("lif_z", "out"), ("out", "readout"), ("readout", "output"),
    ])
    n, cfg = graph.nodes, net.cfg
    assert np.array_equal(n["in"].weight, weights["in"].T) and np.array_equal(n["out"].weight, weights["out"].T)
    off = ~np.eye(len(weights["rec"]), dtype=bool)
    assert np.array_equal(n["rec"].weight[off], weights["rec"].T[off]) and np.all(np.diag(n["rec"].weight) == 0)
    assert np.all(n["lif_v"].tau == cfg.tau_mem) and np.all(n["readout"].tau == cfg.tau_out)
    assert np.all(n["lif_z"].threshold == cfg.threshold) and np.all(n["lif_reset"].scale == -cfg.threshold)
    assert n["lif_z"].metadata["refractory_steps"] == cfg.refractory > 0
    assert math.isclose(n["lif_z"].metadata["refractory_s"], cfg.refractory * cfg.dt)
    assert not bool(n["out"].metadata["adapted_on_chip"]) and bool(n["rec"].metadata["adapted_on_chip"])

    # the clock of one task, through pcmmeta's trainee and readout, and through the graph
    steps = exp.family.time_steps
    clock = np.asarray(exp.family.encode(jnp.arange(steps, dtype=jnp.float32)[None]))  # (1, time, clock), as sampled
    w = {k: jnp.asarray(a) for k, a in weights.items()}
    y_ref = np.asarray(net.head_output(w, net.features(w, jnp.asarray(clock))))[0]  # (time, outputs)
    z_ref = np.asarray(run_trainee(cfg, w["in"], w["rec"], jnp.asarray(clock[0])).spikes)
    y, traced = simulate(graph, clock[0], trace=("lif_z",))
    assert 0 < z_ref.mean() < 0.5, "the check needs a spiking network"
    assert np.array_equal(traced["lif_z"], z_ref)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-6)
    # refractoriness matters here: stepped without it, the spikes differ
    n["lif_z"].metadata["refractory_steps"] = 0
    assert not np.array_equal(simulate(graph, clock[0], trace=("lif_z",))[1]["lif_z"], z_ref)


# ----------------------------------------------------------------------------- refusals
def test_the_cnn_is_refused():
    exp = build_experiment(cnn_recipe())
    net = exp.network
    with pytest.raises(UserInputError, match=r"spiking networks \(lif, rsnn\) only") as err:
        network_graph(net, {})
    assert "\n" not in str(err.value)


def test_bad_weights_and_arguments_are_refused(lif):
    exp, net, weights = lif
    with pytest.raises(UserInputError, match="'hidden'"):
        network_graph(net, {**weights, "hidden": weights["hidden"][:-1]})
    with pytest.raises(UserInputError, match="'out'"):
        network_graph(net, {k: v for k, v in weights.items() if k != "out"})
    with pytest.raises(UserInputError, match="finite"):
        network_graph(net, {**weights, "in": np.full_like(weights["in"], np.nan)})
    with pytest.raises(UserInputError, match="dt"):
        network_graph(net, weights, dt_s=0.0)
    with pytest.raises(UserInputError, match="bias channel"):
        network_graph(net, weights, bias_channel=5)


def test_write_is_atomic_and_an_unwritable_path_is_an_output_error(lif, tmp_path):
    exp, net, weights = lif
    graph = network_graph(net, weights)
    target = tmp_path / "sub" / "net.nir"
    write_nir(target, graph)
    write_nir(target, graph)  # over an existing file
    assert [p.name for p in target.parent.iterdir()] == ["net.nir"]  # no temporary left
    (tmp_path / "folder.nir").mkdir()
    with pytest.raises(UserInputError, match="folder.nir: is a folder where a file belongs"):
        write_nir(tmp_path / "folder.nir", graph)
    (tmp_path / "a-file").write_text("")
    with pytest.raises(OutputError, match="a-file") as err:  # its folder cannot be made
        write_nir(tmp_path / "a-file" / "net.nir", graph)
    assert "\n" not in str(err.value)
