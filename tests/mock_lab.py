"""A lab with a PCM chip of its own, written against docs/chip-bridge.md alone: it reads
`manifest.json` and `targets.csv`, programs its devices with its own device model (not
pcmmeta's: another range of noise, another drift), writes the measurement, and applies a pulse
plan. It imports nothing from pcmmeta."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path


class MockLab:
    """Devices: programming error N(0, `program_std_uS`), drift G(t) = G₀·((t + 1 s)/1 s)^(−ν)
    with ν ~ N(`nu`, 0.01) ≥ 0, SET pulses adding `set_step_uS`·(1 − G/G_max) ± 20 %, reads
    with N(0, `read_std_uS`)."""

    def __init__(self, export_dir: Path, seed: int = 7, program_std_uS=0.4, nu=0.04, set_step_uS=2.2, read_std_uS=0.2):
        self.manifest = json.loads((Path(export_dir) / "manifest.json").read_text(encoding="utf-8"))
        assert self.manifest["format"] == "pcmmeta-chip/1"
        self.g_min, self.g_max = self.manifest["g_min_uS"], self.manifest["g_max_uS"]
        self.rng = random.Random(seed)
        self.program_std, self.nu_mean, self.set_step, self.read_std = program_std_uS, nu, set_step_uS, read_std_uS
        self.g0: dict[tuple, float] = {}  # per device (layer, row, col, sign): conductance after its last programming
        self.t0: dict[tuple, float] = {}  # … and when, s since the end of programming
        self.nu: dict[tuple, float] = {}
        with open(Path(export_dir) / "targets.csv", newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            assert reader.fieldnames[:5] == ["layer", "row", "col", "sign", "target_uS"]
            for line in reader:
                key = (line["layer"], int(line["row"]), int(line["col"]), line["sign"])
                g = float(line["target_uS"]) + self.rng.gauss(0.0, self.program_std)
                self._program(key, g, 0.0)

    def _program(self, key, g: float, t: float) -> None:
        self.g0[key] = min(max(g, self.g_min), self.g_max)
        self.t0[key] = t
        self.nu[key] = max(self.rng.gauss(self.nu_mean, 0.01), 0.0)

    def conductance(self, key, t: float) -> float:
        return self.g0[key] * ((t - self.t0[key] + 1.0) / 1.0) ** (-self.nu[key])

    def measure(self, path: Path, t: float, with_time_column: bool = True) -> None:
        """One read of every device at t (s since the end of programming)."""
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["layer", "row", "col", "sign", "g_uS"] + (["t_s"] if with_time_column else []))
            for key in self.g0:
                g = max(self.conductance(key, t) + self.rng.gauss(0.0, self.read_std), 0.0)
                w.writerow([*key, f"{g:.6g}"] + ([f"{t:g}"] if with_time_column else []))

    def apply_plan(self, plan: Path, t: float) -> int:
        """Apply every line's SET pulses at time t; returns the pulses applied."""
        total = 0
        with open(plan, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            assert reader.fieldnames == ["layer", "row", "col", "sign", "pulses"]
            head = {layer["name"] for layer in self.manifest["layers"] if layer["role"] == "head"}
            for line in reader:
                assert line["layer"] in head, line
                key = (line["layer"], int(line["row"]), int(line["col"]), line["sign"])
                n = int(line["pulses"])
                assert n >= 1
                g = self.conductance(key, t)
                for _ in range(n):
                    g += self.set_step * (1.0 - g / self.g_max) * (1.0 + 0.2 * self.rng.gauss(0.0, 1.0))
                self._program(key, g, t)
                total += n
        return total


def weights_of(manifest: dict, measured: Path) -> dict[str, dict[tuple[int, int], float]]:
    """The lab's own reading of the documented weight map: W = weight_per_uS · (G⁺ − G⁻)."""
    per = {layer["name"]: layer["weight_per_uS"] for layer in manifest["layers"]}
    w: dict[str, dict[tuple[int, int], float]] = {n: {} for n in per}
    with open(measured, newline="", encoding="utf-8") as f:
        for line in csv.DictReader(f):
            sign = 1.0 if line["sign"] == "+" else -1.0
            cell = (int(line["row"]), int(line["col"]))
            w[line["layer"]][cell] = w[line["layer"]].get(cell, 0.0) + sign * per[line["layer"]] * float(line["g_uS"])
    return w




def round_trip(invoke, run_dir: Path, folder: Path, task_seed: int = 0, drift_tasks: int = 4) -> dict:
    """export → the lab programs and measures → import-chip → drift-eval → adapt --plan → the lab
    applies the pulses and measures → import-chip --adapted-for, through the command line
    (`invoke(*args)` returns a click result); the JSON bodies of the steps."""

    def ok(*args):
        result = invoke(*args)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout) if "--json" in args else result

    out = {"export": ok("export", folder / "export", "--run", run_dir, "--json")}
    lab = MockLab(folder / "export")
    lab.measure(folder / "measured.csv", 30.0)
    out["import"] = ok("import-chip", folder / "measured.csv", "--run", run_dir, "--json")
    out["drift"] = ok("drift-eval", "--run", run_dir, "--hours", "1,720", "--tasks", drift_tasks, "--json")
    out["plan"] = ok("adapt", "--run", run_dir, "--task-seed", task_seed, "--plan", folder / "plan.csv", "--json")
    lab.apply_plan(folder / "plan.csv", 3600.0)
    lab.measure(folder / "measured-adapted.csv", 3630.0)
    out["adapted"] = ok(
        "import-chip", folder / "measured-adapted.csv", "--run", run_dir, "--adapted-for", task_seed, "--json"
    )
    out["report"] = ok("report", run_dir, "--json")
    page = (Path(run_dir) / "report.html").read_text(encoding="utf-8")
    assert "Measured on a chip" in page and {"deployment", "adaptation", "drift"} <= set(out["report"]["present"])
    out["runs"] = ok("runs", "--runs-dir", Path(run_dir).parent, "--json")
    assert [r["deployed"] for r in out["runs"]["runs"] if r["name"] == Path(run_dir).name] == ["measured"]
    return out
