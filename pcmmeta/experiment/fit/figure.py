"""The figure of a device fit (`fit-device --plot`): the data beside the fitted model."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pcmmeta.core.devices.joshi import nu_mean_law, nu_std_law, read_noise_amplitude_law
from pcmmeta.experiment.fit import joshi, nandakumar
from pcmmeta.experiment.fit.design import MIN_G_FOR_NOISE_FIT
from pcmmeta.experiment.fit.grouping import group_reads
from pcmmeta.io.plots import binned, plt, save_figure


def plot_device_fit(data, result, path: str | Path) -> None:
    """Data and fitted model: increment mean/std vs G, drift in log-log, read noise vs G
    (joshi2020: the drift exponent's law vs G instead of the increments)."""
    if result.device.family == "joshi2020":
        return _plot_joshi_fit(data, result, path)
    dev = result.device
    groups = nandakumar.fit_groups(data, dev.drift_t0, dev.read_std_slope, dev.read_std_intercept, dev.drift_nu_mean)
    inc = nandakumar.increment_pairs(data, groups, dev, (dev.reset_mean, dev.reset_std))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))

    ax = axes[0]
    bins = np.linspace(dev.g_min, dev.g_max, 25)
    g_line = np.linspace(dev.g_min, dev.g_max, 100)
    late = inc.pulse >= 8
    for sel, label, n in ((inc.pulse == 1, "pulse 1", 1), (late, "pulses ≥ 8", 8)):
        c, m, s = binned(inc.g_before[sel], (inc.g_after - inc.g_before)[sel], bins)
        line = ax.errorbar(c, m, yerr=None, fmt="o", ms=4, label=f"data, {label}: mean")
        ax.plot(c, s, "s", ms=4, mfc="none", color=line[0].get_color(), label=f"data, {label}: std")
        ax.plot(g_line, np.asarray(dev.set_increment_mean(g_line, n)), "-", color=line[0].get_color())
        ax.plot(g_line, np.asarray(dev.set_increment_std(g_line, n)), "--", color=line[0].get_color())
    ax.set(
        xlabel="conductance before the pulse (µS)",
        ylabel="SET increment (µS)",
        title="programming: mean (—) and std (- -) of the model",
    )
    ax.legend(fontsize=7)

    ax = axes[1]
    t_grid = np.unique(data.t_s[data.t_s > 0])
    keep = groups.g_prog >= MIN_G_FOR_NOISE_FIT
    rows = keep[data.group]
    ratio = data.g_uS[rows] / groups.g_prog[data.group[rows]]
    med = [np.median(ratio[data.t_s[rows] == t]) for t in t_grid]
    ax.loglog(t_grid, med, "o", label="data: median G(t)/Ĝ_p")
    t_line = np.geomspace(t_grid.min(), t_grid.max(), 100)
    ax.loglog(
        t_line,
        (np.maximum(t_line, dev.drift_t0) / dev.drift_t0) ** -dev.drift_nu_mean,
        "-",
        label=f"model: ν = {dev.drift_nu_mean:.3f}, t0 = {dev.drift_t0:.1f} s",
    )
    ax.set(xlabel="time since programming (s)", ylabel="relative conductance", title="drift")
    ax.legend(fontsize=8)

    ax = axes[2]
    resid = (data.g_uS - groups.fitted) * np.sqrt(groups.dof_factor)
    c, m, s = binned(groups.fitted[rows], resid[rows], np.linspace(MIN_G_FOR_NOISE_FIT, dev.g_max, 20))
    ax.plot(c, s, "o", label="data: residual std")
    ax.plot(g_line, np.asarray(dev.read_std(g_line)), "-", label="model")
    ax.set(xlabel="conductance (µS)", ylabel="read noise std (µS)", title="read noise")
    ax.legend(fontsize=8)
    fig.suptitle(f"device fit: {len(data.device_names)} devices, {data.g_uS.size} reads")
    save_figure(fig, path)


def _plot_joshi_fit(data, result, path: str | Path) -> None:
    """joshi2020: ν̂ of the drift groups vs G with μ_ν ± σ_ν, drift in log-log, relative read
    noise Q_s vs G."""
    dev = result.device
    p = group_reads(data)
    fit = joshi.group_fit(p, dev, dev.drift_t0)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    g_line = np.geomspace(max(MIN_G_FOR_NOISE_FIT, 1e-3), dev.g_max, 100)

    ax = axes[0]
    good = joshi.drift_groups(fit)
    ax.semilogx(fit.g_prog[good], fit.nu[good], ".", ms=2, alpha=0.3, label="data: ν̂ per (device, pulse)")
    c, m, sd = binned(
        np.log(fit.g_prog[good]), fit.nu[good], np.linspace(np.log(MIN_G_FOR_NOISE_FIT), np.log(dev.g_max), 16)
    )
    ax.semilogx(np.exp(c), m, "o", label="data: binned mean")
    mu, sigma = nu_mean_law(dev, g_line, np), nu_std_law(dev, g_line, np)
    ax.semilogx(g_line, mu, "-", label="model μ_ν")
    ax.fill_between(g_line, mu - sigma, mu + sigma, alpha=0.2, label="model μ_ν ± σ_ν (ν only)")
    ax.set(xlabel="programmed conductance Ĝ_p (µS)", ylabel="drift exponent ν", title="drift exponent vs G")
    ax.legend(fontsize=7)

    ax = axes[1]
    t_grid = np.unique(data.t_s[data.t_s > 0])
    rows = good[data.group]
    ratio = data.g_uS[rows] / fit.g_prog[data.group[rows]]
    med = [np.median(ratio[data.t_s[rows] == t]) for t in t_grid]
    ax.loglog(t_grid, med, "o", label="data: median G(t)/Ĝ_p")
    t_line = np.geomspace(t_grid.min(), t_grid.max(), 100) if t_grid.size else np.geomspace(1, 1e4, 100)
    nu_typ = float(np.median(fit.nu[good])) if good.any() else float(nu_mean_law(dev, dev.g_max / 2, np))
    ax.loglog(
        t_line,
        ((t_line + dev.drift_t0) / dev.drift_t0) ** -nu_typ,
        "-",
        label=f"model: ν = {nu_typ:.3f}, t0 = {dev.drift_t0:.1f} s",
    )
    ax.set(xlabel="time since programming (s)", ylabel="relative conductance", title="drift")
    ax.legend(fontsize=8)

    ax = axes[2]
    use = (fit.g_prog[data.group] >= MIN_G_FOR_NOISE_FIT) & (p.n_reads[data.group] >= 2) & (fit.fitted > 0)
    rel = (
        (data.g_uS - fit.fitted)
        / np.where(fit.fitted > 0, fit.fitted, 1.0)
        / np.sqrt(fit.time_factor * np.maximum(1 - fit.leverage, 0.05))
    )
    if use.sum() >= 20:
        c, m, sd = binned(
            np.log(fit.g_prog[data.group][use]),
            rel[use],
            np.linspace(np.log(MIN_G_FOR_NOISE_FIT), np.log(dev.g_max), 16),
        )
        ax.loglog(np.exp(c), sd, "o", label="data: relative residual std / √L(t)")
    ax.loglog(g_line, read_noise_amplitude_law(dev, g_line, np), "-", label="model Q_s")
    ax.set(xlabel="programmed conductance (µS)", ylabel="relative read noise Q_s", title="1/f read noise")
    ax.legend(fontsize=8)
    fig.suptitle(f"device fit (joshi2020): {len(data.device_names)} devices, {data.g_uS.size} reads")
    save_figure(fig, path)
