"""Figures. Matplotlib with the Agg backend: files only, no screen needed."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pcmmeta.io.runs import atomic_write_bytes  # noqa: E402

if TYPE_CHECKING:  # the task families (and JAX) only where a task figure is drawn
    from pcmmeta.core.tasks.figures import TaskFigure


def figure_png(fig) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    buf = io.BytesIO()
    if fig.get_layout_engine() is None:  # titles, panel titles and tick labels kept apart
        fig.set_layout_engine("constrained")
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def save_figure(fig, path: str | Path) -> None:
    """Save as PNG atomically and close the figure."""
    atomic_write_bytes(Path(path), figure_png(fig))


def binned(x: np.ndarray, y: np.ndarray, bins: np.ndarray):
    idx = np.digitize(x, bins) - 1
    centres, means, stds = [], [], []
    for i in range(len(bins) - 1):
        sel = idx == i
        if sel.sum() >= 20:
            centres.append(x[sel].mean())
            means.append(y[sel].mean())
            stds.append(y[sel].std())
    return np.array(centres), np.array(means), np.array(stds)


def plot_training_curve(metrics_path: Path, path: Path) -> None:
    import json

    rows = [json.loads(l) for l in Path(metrics_path).read_text().splitlines() if l.strip()]
    if not rows:
        return
    save_figure(training_curve_figure(rows), path)


def training_curve_figure(rows: list[dict]):
    """The training batch's query loss before and after adaptation over meta-iterations (log
    axis), from `metrics.jsonl` lines (`iteration`, `loss_before`, `loss_after`)."""
    it = [r["iteration"] for r in rows]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.plot(it, [r["loss_before"] for r in rows], label="query loss before adaptation")
    ax.plot(it, [r["loss_after"] for r in rows], label="query loss after adaptation (the MAML loss)")
    ax.set(xlabel="meta-iteration", ylabel="loss (training batch)", yscale="log", title="meta-training")
    ax.legend()
    return fig


def plot_task_predictions(rows: list[dict], path: Path, title: str) -> None:
    n = len(rows)
    cols = min(n, 4)
    fig, axes = plt.subplots(
        (n + cols - 1) // cols, cols, figsize=(3.6 * cols, 3.0 * ((n + cols - 1) // cols)), squeeze=False
    )
    for ax, r in zip(axes.flat, rows):
        ax.plot(r["x"], r["target"], "k-", label="target")
        ax.plot(r["x"], r["before"], "--", label="before")
        ax.plot(r["x"], r["after"], "-", label="after")
        ax.plot(r["x_support"], r["y_support"], "k.", ms=5, label="support")
        ax.set(xlabel="input x", ylabel="output y")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(title)
    save_figure(fig, path)


def plot_arm_tasks(rows: list[dict], path: Path, title: str, arm: np.ndarray, raster: np.ndarray | None = None) -> None:
    """Per task: joint angles vs step (target, before, after) and the end-effector path in the
    plane with the arm at its start pose; with `raster` (time × neurons, 0/1), the trainee's
    spikes after the update for the first task."""
    n = len(rows)
    cols = 3 if raster is not None else 2
    fig, axes = plt.subplots(n, cols, figsize=(4.2 * cols, 3.4 * n), squeeze=False)
    styles = {"target": ("k-", 2.0), "before": ("C1--", 1.2), "after": ("C0-", 1.2)}
    for row, r in zip(axes, rows):
        ax = row[0]
        for name, (style, lw) in styles.items():
            theta = r["angles"][name]
            steps = np.arange(theta.shape[0])
            ax.plot(steps, theta[:, 0], style, lw=lw, label=f"{name} θ₁")
            ax.plot(steps, theta[:, 1], style, lw=lw, alpha=0.5, label=f"{name} θ₂")
        ax.set(xlabel="step", ylabel="joint angle (rad)", title="joint angles (θ₂ faint)")
        ax = row[1]
        ax.plot(arm[:, 0], arm[:, 1], "o-", color="0.6", lw=3, ms=5, label="arm at start")
        for name, (style, lw) in styles.items():
            p = r["path"][name]
            ax.plot(p[:, 0], p[:, 1], style, lw=lw, label=name)
        ax.set(xlabel="x (unit of task.link_lengths)", ylabel="y", title="end-effector path", aspect="equal")
    axes[0, 0].legend(fontsize=6, ncol=3)
    axes[0, 1].legend(fontsize=7)
    if raster is not None:
        for i, ax in enumerate(axes[:, 2]):
            if i == 0:
                t, j = np.nonzero(np.asarray(raster) > 0)
                ax.plot(t, j, "k|", ms=2)
                rate = float(np.asarray(raster).mean())
                ax.set(
                    xlabel="step",
                    ylabel="trainee neuron",
                    title=f"trainee spikes after the update ({rate * 1000:.3g} per 1000 steps)",
                )
            else:
                ax.axis("off")
    fig.suptitle(title)
    save_figure(fig, path)


def plot_deployment(
    target: np.ndarray, programmed: np.ndarray, pulses: np.ndarray, tolerance: float, path: Path, title: str
) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    ax = axes[0]
    ax.plot(target, programmed, ".", ms=2, alpha=0.4)
    lim = [min(target.min(), programmed.min()), max(target.max(), programmed.max())]
    ax.plot(lim, lim, "k-", lw=1, label="programmed = target")
    ax.fill_between(
        lim,
        [lim[0] - tolerance, lim[1] - tolerance],
        [lim[0] + tolerance, lim[1] + tolerance],
        color="k",
        alpha=0.1,
        label=f"± tolerance {tolerance} µS",
    )
    ax.set(xlabel="target conductance (µS)", ylabel="programmed conductance (µS)", title="target vs programmed")
    ax.legend(fontsize=8)
    ax = axes[1]
    ax.hist(pulses, bins=np.arange(0, pulses.max() + 2) - 0.5)
    ax.set(xlabel="pulses per device (SET + RESET)", ylabel="devices", title="pulse counts", yscale="log")
    fig.suptitle(title)
    save_figure(fig, path)


def plot_drift(rows: list[dict], path: Path, title: str, metric: str = "mse", baselines: dict | None = None) -> None:
    """rows: one per (hours, condition) with keys hours, condition, <metric>, sem."""
    save_figure(drift_figure(rows, title, metric, baselines), path)


#: Marker and line style per condition line: conditions that coincide (deployed and drift
#: compensation both at chance) stay visible, one drawn over the other.
_DRIFT_STYLES = (("o", "-"), ("s", "--"), ("^", "-."), ("D", ":"), ("v", "-"), ("P", "--"))


def drift_figure(rows: list[dict], title: str, metric: str = "mse", baselines: dict | None = None):
    """`plot_drift`'s figure: the metric vs time since deployment (log axis) ± s.e., one line
    per condition in the order the rows give them, each a little apart in time (×1.06 per
    line) so that equal values do not hide each other; `baselines` ({key: value}, keys of
    `BASELINE_NAMES`) as grey horizontal lines."""
    from pcmmeta.io.baseline_names import BASELINE_NAMES

    fig, ax = plt.subplots(figsize=(7, 4.5))
    conditions = list(dict.fromkeys(r["condition"] for r in rows))
    spread = 1.06 ** (np.arange(len(conditions)) - (len(conditions) - 1) / 2)
    for i, c in enumerate(conditions):
        sel = [r for r in rows if r["condition"] == c]
        marker, line = _DRIFT_STYLES[i % len(_DRIFT_STYLES)]
        ax.errorbar(
            [r["hours"] * spread[i] for r in sel],
            [r[metric] for r in sel],
            yerr=[r["sem"] for r in sel],
            marker=marker,
            linestyle=line,
            capsize=3,
            label=c,
        )
    for j, (key, value) in enumerate((baselines or {}).items()):
        if value is not None and np.isfinite(value):
            ax.axhline(value, color="0.45", lw=1, linestyle=(0, (2, 2 + j)), label=BASELINE_NAMES.get(key, key))
    ax.set(xscale="log", xlabel="time since deployment (h, points spread apart)", ylabel=f"held-out query {metric}")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return fig


def plot_few_shot(path, title, x_support, y_support, x_query, y_query, outputs, curve, source: str) -> None:
    """One task: a support image per label, query images with the prediction after adaptation
    (green right, red wrong), and accuracy vs inner step (`curve`: held-out mean ± s.e.; else
    this task's)."""
    predicted = outputs[-1].argmax(-1)
    labels = sorted(set(int(v) for v in y_support))
    n_query = min(len(y_query), 15)
    fig = plt.figure(figsize=(12, 4.8))
    grid = fig.add_gridspec(3, max(len(labels), 5) + 5)
    for i, label in enumerate(labels):
        ax = fig.add_subplot(grid[0, i])
        ax.imshow(x_support[list(y_support).index(label)], cmap="gray_r")
        ax.set_title(f"support {label}", fontsize=8)
        ax.axis("off")
    order = np.random.default_rng(0).permutation(len(y_query))[:n_query]
    cols = max(len(labels), 5)
    for j, idx in enumerate(order[: 2 * cols]):
        ax = fig.add_subplot(grid[1 + j // cols, j % cols])
        ax.imshow(x_query[idx], cmap="gray_r")
        ok = predicted[idx] == y_query[idx]
        ax.set_title(f"→ {predicted[idx]} (is {y_query[idx]})", fontsize=7, color="green" if ok else "red")
        ax.axis("off")
    ax = fig.add_subplot(grid[:, cols + 1 :])
    if curve:
        steps = [c["step"] for c in curve]
        means = [c["mean"] for c in curve]
        sems = [0.0 if c["sem"] is None or not np.isfinite(c["sem"]) else c["sem"] for c in curve]
        ax.errorbar(steps, means, yerr=sems, marker="o", capsize=3)
        ax.set_ylabel("accuracy")
    else:
        acc = (outputs.argmax(-1) == y_query[None]).mean(-1)
        ax.plot(range(len(acc)), acc, marker="o")
        ax.set_ylabel("accuracy (this task)")
    ax.set(xlabel="inner step (0 = before adaptation)", ylim=(0, 1.02))
    ax.set_xticks(range(len(curve) if curve else outputs.shape[0]))
    ax.grid(alpha=0.3)
    fig.suptitle(f"{title}\ndata: {source}", fontsize=9)
    save_figure(fig, path)


def plot_programming_comparison(figures, results, target, path: Path, title: str, curves: dict | None = None) -> None:
    """Left: RMS error vs programming time per device, one point per method (and, with `curves`
    {method: [(time_us, rms_uS, tolerance), …]}, a line over tolerances). Right: the pulse-count
    histogram (SET + RESET) of each method, and verify reads as dashed lines."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    ax = axes[0]
    colours = {}
    for f in figures:
        (line,) = ax.plot([f.time_us_mean], [f.rms_error_uS], "o", ms=8, label=f"{f.method}")
        colours[f.method] = line.get_color()
    for method, points in (curves or {}).items():
        points = sorted(points)
        ax.plot([p[0] for p in points], [p[1] for p in points], "-", color=colours.get(method), alpha=0.6)
        for t_us, rms, tol in points:
            ax.annotate(f"{tol:g}", (t_us, rms), fontsize=7, textcoords="offset points", xytext=(3, 3))
    ax.set(
        xscale="log",
        xlabel="programming time per device (µs, cost model)",
        ylabel="RMS error (µS)",
        title="error vs programming time",
    )
    _sparse_log_ticks(ax.xaxis)
    ax.legend(fontsize=8)
    ax = axes[1]
    top = max(int(np.asarray(r.pulses).max()) for r in results.values())
    bins = np.arange(0, top + 2) - 0.5
    for f in figures:
        r = results[f.method]
        ax.hist(np.asarray(r.pulses), bins=bins, histtype="step", color=colours[f.method], label=f"{f.method}: pulses")
        if np.asarray(r.reads).max() > 0:
            ax.hist(
                np.asarray(r.reads),
                bins=bins,
                histtype="step",
                linestyle="--",
                color=colours[f.method],
                label=f"{f.method}: verify reads",
            )
    ax.set(xlabel="per device", ylabel="devices", title="pulses (SET + RESET) and verify reads", yscale="log")
    ax.legend(fontsize=7)
    fig.suptitle(title)
    save_figure(fig, path)


def plot_network_programming(methods: list[dict], path: Path, title: str, metric: str) -> None:
    """`deploy --compare`'s figure: per method, the held-out metric (mean ± s.e.) against the
    total device time (left) and the row-parallel chip time (right), log axes; filled markers
    after adaptation, open ones as deployed, one colour per method, one marker per time."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), sharey=True)
    markers = ("o", "s", "^", "D", "v")
    for ax, key, label in (
        (axes[0], "programming_time_s", "total device time (s, every device in turn)"),
        (axes[1], "chip_time_s", "chip time (s, row-parallel)"),
    ):
        for i, m in enumerate(methods):
            colour = f"C{i % 10}"
            for condition, fill in (("adapted", colour), ("deployed", "none")):
                for j, (hours, point) in enumerate(m["metric"].get(condition, {}).items()):
                    ax.errorbar(
                        [m[key]],
                        [point["mean"]],
                        yerr=[point["sem"] or 0.0],
                        marker=markers[j % len(markers)],
                        color=colour,
                        markerfacecolor=fill,
                        capsize=3,
                        linestyle="none",
                        label=f"{m['method']}, {condition} {hours} h" if ax is axes[0] else None,
                    )
        ax.set(xscale="log", xlabel=label)
        _sparse_log_ticks(ax.xaxis)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"held-out {metric} (test split)")
    axes[1].legend(*axes[0].get_legend_handles_labels(), fontsize=6, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle(title)
    save_figure(fig, path)


def _sparse_log_ticks(axis) -> None:
    """Labels at 1, 2 and 5 × 10^k only: over less than a decade matplotlib labels every minor
    tick of a log axis, and the labels run into each other."""
    from matplotlib.ticker import LogLocator, NullFormatter, StrMethodFormatter

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(StrMethodFormatter("{x:g}"))
    axis.set_minor_formatter(NullFormatter())


def plot_tasks(
    figure: TaskFigure,
    path: Path,
    title: str,
    curve: list[dict] | None = None,
    raster: np.ndarray | None = None,
) -> None:
    """Draw a task family's figure (`AbstractTaskFamily.figure`). `curve`, if given, is the
    held-out metric per inner step ({"step", "mean", "sem"}); `raster` (time × neurons, 0/1),
    a spiking network's spikes after the update (arm figures)."""
    from pcmmeta.core.tasks.figures import ArmFigure, FewShotFigure, RegressionFigure

    if isinstance(figure, RegressionFigure):
        plot_task_predictions(figure.rows, path, title=title)
    elif isinstance(figure, ArmFigure):
        plot_arm_tasks(figure.rows, path, title=title, arm=figure.arm, raster=raster)
    elif isinstance(figure, FewShotFigure):
        plot_few_shot(
            path,
            title,
            figure.x_support,
            figure.y_support,
            figure.x_query,
            figure.y_query,
            figure.outputs,
            curve,
            figure.source,
        )
    else:
        raise TypeError(f"no drawing for {type(figure).__name__}")
