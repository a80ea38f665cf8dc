"""The robot-arm system: arm task family, recurrent trainee + learning-signal generator, e-prop
inner rule, and the chain meta-train → deploy → adapt (sampled task and a user's demonstration)
→ drift-eval through the CLI."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml
from mock_lab import round_trip
from tiny import assert_png_drawn
from typer.testing import CliRunner

from pcmmeta.cli.app import app
from pcmmeta.core.clock import ChipClock
from pcmmeta.core.devices import BUILTIN_DEVICES, DeviceState
from pcmmeta.core.inner import EpropLSG, HeadChip
from pcmmeta.core.modes import PCM, Quantized
from pcmmeta.core.networks.rsnn import RecurrentLIF, eprop_gradient, run_trainee
from pcmmeta.core.snn import spike
from pcmmeta.core.tasks.arm import ArmTrajectories, forward_kinematics, inverse_kinematics
from pcmmeta.errors import UserInputError
from pcmmeta.experiment.recipe import validate
from pcmmeta.experiment.train import build_experiment, init_state, make_optimizer, make_train_step
from pcmmeta.io.support_file import read_support

runner = CliRunner()
DEVICE = BUILTIN_DEVICES["nandakumar2018"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def arm_recipe(**sections) -> dict:
    user = {
        "name": "arm-tiny", "seed": 0, "mode": "pcm",
        "network": {"kind": "rsnn", "neurons": 12, "lsg_neurons": 16},
        "task": {"family": "arm", "time_steps": 30, "window": 10},
        "inner": {"rule": "eprop-lsg"},
        "train": {"iterations": 4, "meta_batch": 4, "chunk_tasks": 4, "checkpoint_every": 2, "log_every": 1, "warmup": 0},
        "eval": {"tasks": 6, "plot_tasks": 2},
    }
    for section, values in sections.items():
        user.setdefault(section, {}).update(values) if isinstance(values, dict) else user.__setitem__(section, values)
    return validate(user)


# ------------------------------------------------------------------------ task family
def test_kinematics_round_trip_on_the_start_pose_branch():
    links = (0.5, 0.7)
    theta = np.stack([np.linspace(-2, 2, 50), np.linspace(0.2, 2.8, 50)], -1)
    xy = np.asarray(forward_kinematics(jnp.asarray(theta), links))
    back = inverse_kinematics(xy, links, 1.0)
    np.testing.assert_allclose(np.angle(np.exp(1j * (back - theta))), 0.0, atol=1e-5)  # equal modulo 2π
    assert np.isnan(inverse_kinematics(np.array([[2.0, 0.0]]), links, 1.0)).all()  # beyond reach 1.2


def test_trajectories_are_smooth_bounded_and_differ_between_tasks():
    family = ArmTrajectories(time_steps=249, window=120)
    tasks = family.sample(jax.random.key(0), 64)
    omega = np.asarray(tasks.y_support[:, 0])
    assert omega.shape == (64, 249, 2)
    assert np.abs(omega).max() <= math.pi
    # Hann smoothing: step-to-step changes far below the Brownian increments' std (0.1)
    assert np.std(np.diff(omega, axis=1)) < 0.1 / 5  # unsmoothed: 0.1
    assert np.std(omega[:, 100]) > 0.3  # tasks differ
    np.testing.assert_array_equal(tasks.y_query, tasks.y_support)  # the query is the demonstration


def test_clock_and_target_codes():
    family = ArmTrajectories(time_steps=30, window=10, clock_neurons=3, coordinate_neurons=8)
    clock = np.asarray(family.encode(jnp.arange(30.0)))
    assert clock.shape == (30, 3) and (clock.sum(-1) == 1).all()
    np.testing.assert_array_equal(clock.argmax(-1), np.repeat([0, 1, 2], 10))
    tasks = family.sample(jax.random.key(1), 2)
    code = np.asarray(family.encode_target(tasks.y_support[0, 0])).reshape(30, 2, 8)
    active = code.sum(-1)
    assert ((active >= 1) & (active <= 2)).all()  # a place code: the one or two nearest neurons
    # the most active neuron tracks the coordinate
    xy = np.asarray(family.positions(tasks.y_support[0, 0]))
    u = (xy / family.reach + 1) / 2 * 7
    assert np.all(np.abs(np.argmax(code, -1) - u) < 1.0)


def test_loss_is_half_velocity_half_position():
    family = ArmTrajectories(time_steps=30, window=10)
    y = family.sample(jax.random.key(2), 1).y_support[0]
    assert float(family.loss(y, y)) == 0.0
    pred = y + 0.3
    vel = float(jnp.mean((pred - y) ** 2))
    pos = float(jnp.mean((family.positions(pred) - family.positions(y)) ** 2))
    assert float(family.loss(pred, y)) == pytest.approx(0.5 * vel + 0.5 * pos, rel=1e-5)
    m = family.metrics(pred, y)
    assert float(m["rms_position_links"]) == pytest.approx(math.sqrt(2 * pos) / 0.5, rel=1e-4)


def test_demonstration_files_round_trip_and_bad_ones_name_the_line(tmp_path):
    family = ArmTrajectories(time_steps=30, window=10)
    y = family.sample(jax.random.key(3), 1).y_support[0, 0]
    theta = np.asarray(family.angles(y))
    xy = np.asarray(family.positions(y))
    t = np.arange(30) * 1e-3
    angles = tmp_path / "angles.csv"
    angles.write_text("t,theta1,theta2\n" + "".join(f"{a},{b},{c}\n" for a, (b, c) in zip(t, theta)))
    plane = tmp_path / "plane.csv"
    plane.write_text("t,x,y\n" + "".join(f"{a},{b},{c}\n" for a, (b, c) in zip(t, xy)))
    for path in (angles, plane):
        task = read_support(family, path)
        np.testing.assert_allclose(np.asarray(task.y_support[0, 0]), np.asarray(y), atol=2e-3)

    def bad(text, message):
        path = tmp_path / "bad.csv"
        path.write_text(text)
        with pytest.raises(UserInputError, match=message):
            read_support(family, path)

    rows = [f"{a},{b},{c}" for a, (b, c) in zip(t, theta)]
    bad("t,theta1,theta2\n" + "\n".join(rows[:10]) + "\n", "10 trajectory steps; the run's recipe has task.time_steps 30")
    swapped = rows.copy()
    swapped[5] = f"0,{theta[5, 0]},{theta[5, 1]}"
    bad("t,theta1,theta2\n" + "\n".join(swapped) + "\n", r"bad.csv:7: column 't' must increase")
    jump = rows.copy()
    jump[3] = f"{t[3]},{theta[3, 0] + 1.0},{theta[3, 1]}"
    bad("t,theta1,theta2\n" + "\n".join(jump) + "\n", r"bad.csv:5: a joint moves")
    far = [f"{a},{b},{c}" for a, (b, c) in zip(t, xy)]
    far[2] = f"{t[2]},5.0,0.0"
    bad("t,x,y\n" + "\n".join(far) + "\n", r"bad.csv:4: point \(5, 0\) is out of the arm's reach")
    bad("time,a\n1,2\n", "expected columns t,theta1,theta2 or t,x,y")


# ------------------------------------------------------------------------ e-prop
def test_eprop_equals_bptt_without_recurrence_or_reset_gradient():
    """With no recurrent weights, a learning signal equal to ∂E/∂z_j(t) and the reset kept out
    of the gradient (e-prop's factorisation), e-prop's Σ_t L ψ x̄ is the exact gradient."""
    cfg = RecurrentLIF(threshold=0.6, refractory=0, surrogate_beta=3.0)
    k1, k2, k3 = jax.random.split(jax.random.key(4), 3)
    x = jax.random.bernoulli(k1, 0.3, (40, 5)).astype(jnp.float32)
    w_in = jax.random.normal(k2, (5, 7)) * 0.8
    c = jax.random.normal(k3, (40, 7))  # E = Σ_t c_t · z_t, so ∂E/∂z_t = c_t

    def energy(w):
        def step(v_z, x_t):
            v, z = v_z
            v = cfg.membrane_decay * v + x_t @ w - cfg.threshold * jax.lax.stop_gradient(z)
            z = spike(v - cfg.threshold, cfg.surrogate_beta)
            return (v, z), z

        _, z = jax.lax.scan(step, (jnp.zeros(7), jnp.zeros(7)), x)
        return jnp.sum(c * z)

    run = run_trainee(cfg, w_in, jnp.zeros((7, 7)), x)
    assert float(run.spikes.sum()) > 10  # the neurons spike: the check is not vacuous
    g = eprop_gradient(run, c)
    np.testing.assert_allclose(np.asarray(g["in"]), np.asarray(jax.grad(energy)(w_in)), rtol=1e-4, atol=1e-5)


def _chip(mode):
    return HeadChip(DEVICE, mode, ChipClock(100.0, 101.0, 50.0, 1), {"w": jnp.asarray(1.0)})


def test_update_becomes_whole_pulses_on_the_right_device():
    rule = EpropLSG(learning_rate=1.0, pulse_fraction=1 / 16, max_pulses=5)
    span = DEVICE.g_max - DEVICE.g_min
    step_w = span / 16 / span  # one pulse in weight units at scale 1
    grad = -jnp.array([0.0, 1.0, 2.4, -3.0, 9.0]) * step_w  # ΔW = −grad: +0, +1, +2.4, −3, +9 pulses
    counts, wanted = rule.pulse_counts(grad, 1.0, DEVICE)
    np.testing.assert_array_equal(np.asarray(counts), [[0, 1, 2, 0, 5], [0, 0, 0, 3, 0]])  # rounded, capped at 5, G⁻ for −
    # quantized mode: each pulse a fixed step, no noise — the conductances move by counts × step
    g0 = jnp.full((2, 5), 2.0)
    state = DeviceState(g0, jnp.zeros((2, 5)), jnp.zeros((2, 5)), jnp.zeros((2, 5), jnp.int32))
    mode = Quantized(bits=4)
    new, c = rule.pulse(jax.random.key(0), state, g0, grad, jnp.asarray(1.0), 101.0, _chip(mode))
    np.testing.assert_allclose(np.asarray(new.g_prog), 2.0 + np.asarray(counts) * mode.step_uS(DEVICE), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(new.n_set), np.asarray(counts))
    # straight-through: the gradient of the new conductance is that of the wanted change
    d = jax.grad(lambda gr: rule.pulse(jax.random.key(0), state, g0, gr, jnp.asarray(1.0), 101.0, _chip(PCM()))[0].g_prog.sum())(grad)
    np.testing.assert_allclose(np.asarray(d), span * np.sign(np.asarray(grad)), rtol=1e-5)


def test_meta_gradient_reaches_the_generator_and_the_conductances():
    exp = build_experiment(arm_recipe(inner={"learning_rate": 1.0}))  # large enough to pulse at initialisation
    opt = make_optimizer(exp.train)
    state = init_state(exp, opt)
    step = make_train_step(exp, opt, exp.train.meta_batch)
    new, loss, means = step(state, exp.family)
    assert np.isfinite(float(loss))
    assert not np.allclose(np.asarray(new.network.lsg.w_out), np.asarray(state.network.lsg.w_out))  # the LSG learns
    assert not np.allclose(np.asarray(new.network.layers["rec"]), np.asarray(state.network.layers["rec"]))
    assert float(means.pulses) > 0  # the update is pulses on the chip


def test_no_adapt_pulses_nothing_and_ideal_applies_the_float_update():
    from pcmmeta.core.maml import batch_results

    results = {}
    for mode in ("no-adapt", "ideal", "pcm"):
        exp = build_experiment(arm_recipe(mode=mode, inner={"learning_rate": 1.0}))
        tasks = exp.family.sample(jax.random.key(5), 3)
        results[mode] = batch_results(exp.network, jax.random.key(6), tasks, exp.family, exp.meta)
    assert float(results["no-adapt"].pulses.sum()) == 0 and float(results["pcm"].pulses.sum()) > 0
    ideal = results["ideal"].metrics["loss"]  # no device noise: before and after differ only by the update
    assert not np.allclose(np.asarray(ideal[:, 0]), np.asarray(ideal[:, -1]))


def test_plugins_refuse_mismatched_families():
    with pytest.raises(UserInputError, match="use task.family: arm"):
        build_experiment(validate({"network": {"kind": "rsnn"}}))
    with pytest.raises(UserInputError, match="use network.kind: rsnn"):
        build_experiment(validate({"task": {"family": "arm"}, "inner": {"rule": "eprop-lsg"}}))
    with pytest.raises(UserInputError, match="eprop-lsg needs a network with a learning-signal generator"):
        exp = build_experiment(validate({"network": {"hidden": [4, 4], "time_steps": 5}, "inner": {"rule": "eprop-lsg"}, "train": {"meta_batch": 2, "chunk_tasks": 2}}))
        make_train_step(exp, make_optimizer(exp.train), 2)(init_state(exp, make_optimizer(exp.train)), exp.family)


# ------------------------------------------------------------------------ the chain
@pytest.mark.slow
def test_arm_through_every_command(tmp_path):
    path = tmp_path / "arm.yaml"
    path.write_text(yaml.safe_dump(arm_recipe()))
    runs = tmp_path / "runs"
    result = invoke("meta-train", path, "--runs-dir", runs)
    assert result.exit_code == 0, result.output
    assert invoke("deploy", "--runs-dir", runs).exit_code == 0
    result = invoke("adapt", "--runs-dir", runs, "--task-seed", 2, "--json", "--plot", tmp_path / "adapt.png")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert set(body["before"]) == {"loss", "mse_velocity", "mse_position", "rms_position_links"}
    assert body["devices_pulsed"] <= body["total_pulses"]
    assert body["energy_pJ"] == pytest.approx(body["total_pulses"] * 10.0)
    assert_png_drawn(tmp_path / "adapt.png", 900, 300)
    # a user's demonstration in the plane
    family = ArmTrajectories(time_steps=30, window=10)
    xy = np.asarray(family.positions(family.sample(jax.random.key(9), 1).y_support[0, 0]))
    demo = tmp_path / "demo.csv"
    demo.write_text("t,x,y\n" + "".join(f"{i * 1e-3},{a},{b}\n" for i, (a, b) in enumerate(xy)))
    result = invoke("adapt", "--runs-dir", runs, "--support", demo, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["set_name"] == "support"
    demo.write_text("t,x,y\n0,9,9\n")
    result = invoke("adapt", "--runs-dir", runs, "--support", demo)
    assert result.exit_code == 2 and "demo.csv" in result.output and "Traceback" not in result.output
    # a lab's chip in the loop (docs/chip-bridge.md); drift-eval runs on the measured chip
    run_dir = runs / (runs / "LATEST").read_text().strip()
    steps = round_trip(invoke, run_dir, tmp_path, task_seed=2)
    rows = steps["drift"]["results"]
    assert {r["condition"] for r in rows} >= {"deployed", "adapted"}
    roles = {layer["name"]: layer["role"] for layer in json.loads((tmp_path / "export" / "manifest.json").read_text())["layers"]}
    assert roles == {"in": "head", "rec": "head", "out": "body"}
    with open(tmp_path / "plan.csv") as f:
        plan = [line.split(",") for line in f.read().splitlines()[1:]]
    assert len(plan) == steps["plan"]["devices"] and {p[0] for p in plan} <= {"in", "rec"}
    assert not any(p[0] == "rec" and p[1] == p[2] for p in plan)  # the masked recurrent diagonal is never pulsed
    assert set(steps["adapted"]["after"]) == {"loss", "mse_velocity", "mse_position", "rms_position_links"}
    # the recurrent network as NIR, weights read from the measured adapted chip
    result = invoke("export", "--format", "nir", tmp_path / "arm.nir", "--run", run_dir, "--adapted", steps["adapted"]["adapted_array"])
    assert result.exit_code == 0, result.output
    import nir

    graph = nir.read(tmp_path / "arm.nir")
    assert np.diag(graph.nodes["rec"].weight).tolist() == [0.0] * 12


@pytest.mark.parametrize("name", ["arm-quick", "arm-15min", "arm"])
def test_shipped_arm_recipes_build(name):
    from pcmmeta.experiment.recipe import load_recipe

    exp = build_experiment(load_recipe(f"recipes/{name}.yaml"))
    assert exp.network.kind == "rsnn" and exp.meta.rule.name == "eprop-lsg" and exp.family.name == "arm"
