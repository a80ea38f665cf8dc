import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pcmmeta.cli.app import app

SAMPLE = Path(__file__).parent.parent / "examples" / "sample-measurements-SIMULATED.csv"
runner = CliRunner()
GOOD_ROWS = [f"d{d},{p},{t},{1.0 + p + 0.01 * t:.3f}" for d in range(2) for p in range(3) for t in (1, 10, 100)]


def write(tmp_path, name, lines, newline="\n", bom=False):
    path = tmp_path / name
    data = newline.join(lines) + newline
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data.encode())
    return path


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_fit_sample_writes_device_json_and_plot(tmp_path):
    out, plot = tmp_path / "dev.yaml", tmp_path / "fit.png"
    result = run("fit-device", SAMPLE, "--out", out, "--plot", plot, "--bootstrap", 2, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["parameters"]["drift_nu_mean"]["status"] == "fitted"
    assert out.exists() and plot.stat().st_size > 10_000
    from pcmmeta import load_device

    assert load_device(out).drift_nu_mean == pytest.approx(report["parameters"]["drift_nu_mean"]["value"])


def test_accepts_bom_crlf_extra_columns_string_ids_and_several_files(tmp_path):
    lines = SAMPLE.read_text().splitlines()
    header, rows = lines[0], lines[1:]
    a = write(tmp_path, "a.csv", [header + ",temperature_K"] + [r + ",300" for r in rows], newline="\r\n", bom=True)
    b = write(tmp_path, "b.csv", lines)
    from pcmmeta.io.measurements import read_measurements

    data = read_measurements([a, b])
    assert len(data.device_names) == 2 * 60  # same ids in both files stay distinct
    assert data.ignored_columns == ["a.csv:temperature_K"]
    result = run("fit-device", a, b, "--out", tmp_path / "d.yaml", "--bootstrap", 0)
    assert result.exit_code == 0, result.output
    assert "ignored extra columns" in result.output


HEADER = "device_id,pulse,t_s,g_uS"


@pytest.mark.parametrize(
    "lines, message",
    [
        (["device_id,pulse,t_s,g_us"] + GOOD_ROWS, "bad.csv:1: missing column 'g_uS' (found 'g_us': misspelled?)"),
        (["device_id,pulse,g_uS"] + GOOD_ROWS, "bad.csv:1: missing column 't_s'"),
        ([HEADER, "d0,0,1,abc"] + GOOD_ROWS, "bad.csv:2: column 'g_uS' is not a number: 'abc'"),
        ([HEADER, "d0,0,1,nan"] + GOOD_ROWS, "bad.csv:2: column 'g_uS' must be finite"),
        ([HEADER] + GOOD_ROWS + ["d0,0,inf,1.0"], "bad.csv:20: column 't_s' must be finite"),
        ([HEADER, "d0,0,1,-0.5"] + GOOD_ROWS, "bad.csv:2: column 'g_uS' must be ≥ 0"),
        ([HEADER, "d0,0,-1,0.5"] + GOOD_ROWS, "bad.csv:2: column 't_s' must be ≥ 0"),
        ([HEADER, "d0,1.5,1,0.5"] + GOOD_ROWS, "bad.csv:2: column 'pulse' must be a whole number"),
        ([HEADER, "d0,-1,1,0.5"] + GOOD_ROWS, "bad.csv:2: column 'pulse' must be a whole number"),
        ([HEADER] + [r for r in GOOD_ROWS if r.startswith("d0")], "bad.csv: 1 device"),
        ([HEADER, "d0,0,1,1e300"] + GOOD_ROWS, "bad.csv:2: column 'g_uS' must be ≥ 0 µS and ≤ 1e+06 µS (1 S), got 1e+300 (a unit error?)"),
        ([HEADER, "d0,0,1e12,1.0"] + GOOD_ROWS, "bad.csv:2: column 't_s' must be ≥ 0 s and ≤ 1e+10 s"),
        ([HEADER] + [f"d{d},0,1,{0.1 * (d + 1)}" for d in range(3)], "bad.csv: nothing can be fitted: read noise: no (device, pulse) was read more than once"),
        ([HEADER] + [r.rsplit(",", 1)[0] + ",4.5" for r in GOOD_ROWS], "bad.csv: every g_uS is 4.5 µS"),
        ([HEADER], "bad.csv: no data rows"),
        ([], "bad.csv: empty file"),
    ],
)
def test_bad_input_one_line_exit_2_no_output(tmp_path, lines, message):
    path = write(tmp_path, "bad.csv", lines) if lines else (tmp_path / "bad.csv")
    if not lines:
        path.write_bytes(b"")
    out = tmp_path / "dev.yaml"
    result = run("fit-device", path, "--out", out, "--bootstrap", 0)
    assert result.exit_code == 2
    assert message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not out.exists()


def test_missing_file(tmp_path):
    out = tmp_path / "dev.yaml"
    result = run("fit-device", tmp_path / "nope.csv", "--out", out)
    assert result.exit_code == 2 and "nope.csv: no such file" in result.output
    assert not out.exists()


# Simulate with known parameters, fit, compare. 600 devices of the default protocol; the
# tolerances (relative) are ≥ 3 bootstrap s.e. at this size, and a fit that drops one of its
# noise corrections misses them (read-noise and increment-slope biases of 20–80%). RESET draws
# are clipped at g_min = reset_mean = 0.1 µS, so the fitted mean sits near the clipped mean,
# 0.104 µS; over simulation seeds 11–14 it was 0.1007–0.1067 (s.d. 0.0026): hence 12%.
ROUND_TRIP_TOLERANCE = {
    "read_std_slope": 0.05, "read_std_intercept": 0.08, "drift_t0": 0.05, "drift_nu_mean": 0.03,
    "drift_nu_std": 0.06, "reset_mean": 0.12, "set_mean_slope": 0.15, "set_mean_intercept": 0.10,
    "set_mean_history": 0.15, "set_std_slope": 0.10, "set_std_intercept": 0.10, "set_std_history": 0.10,
    "set_history_decay": 0.15,
}


def test_simulate_then_fit_round_trip(tmp_path):
    from pcmmeta import load_device

    truth = load_device("nandakumar2018")
    csv = tmp_path / "sim.csv"
    result = run("simulate-measurements", "--devices", 600, "--out", csv, "--seed", 11)
    assert result.exit_code == 0, result.output
    assert csv.read_text().startswith("device_id,pulse,t_s,g_uS\n")
    result = run("fit-device", csv, "--out", tmp_path / "fit.yaml", "--bootstrap", 0, "--json")
    assert result.exit_code == 0, result.output
    params = json.loads(result.stdout)["parameters"]
    for key, rel in ROUND_TRIP_TOLERANCE.items():
        assert params[key]["status"] == "fitted", key
        assert params[key]["value"] == pytest.approx(getattr(truth, key), rel=rel), key
    assert load_device(tmp_path / "fit.yaml").drift_t0 == pytest.approx(params["drift_t0"]["value"])


def test_simulate_flags_are_checked_before_writing(tmp_path):
    for flags in (["--read-times", "1,x,3"], ["--read-times", "1,,3"], ["--protocol", "sparse"], ["--retention-fraction", 2]):
        result = run("simulate-measurements", *flags, "--out", tmp_path / "x.csv")
        assert result.exit_code == 2, (flags, result.output)
        assert len(result.output.strip().splitlines()) == 1 or "--retention-fraction" in result.output
    assert not (tmp_path / "x.csv").exists()


def test_ragged_file_fits_and_reports_what_the_data_constrain(tmp_path):
    csv = tmp_path / "ragged.csv"
    result = run("simulate-measurements", "--devices", 300, "--protocol", "ragged", "--retention-fraction", 0.1, "--out", csv)
    assert result.exit_code == 0, result.output
    result = run("fit-device", csv, "--out", tmp_path / "fit.yaml", "--bootstrap", 2, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # strict JSON: no NaN
    params = report["parameters"]
    assert all(params[k]["status"] == "fitted" and params[k]["constrained"] for k in ("read_std_slope", "drift_nu_mean", "set_mean_slope"))
    assert params["g_max"]["constrained"] is False and params["g_max"]["status"].startswith("default")
    assert report["goodness_of_fit"]["n_repeated_read_dof"] > 0
    human = run("fit-device", csv, "--out", tmp_path / "fit2.yaml", "--bootstrap", 0)
    assert human.exit_code == 0, human.output
    assert "constrained by the data" in human.output and "default: the clip range" in human.output


def test_single_reads_only_report_upper_bounds(tmp_path):
    lines = [HEADER] + [f"d{d},{p},2,{0.3 + 0.8 * p + 0.05 * ((d * 7 + p * 3) % 11)}" for d in range(40) for p in range(6)]
    path = write(tmp_path, "single.csv", lines)
    result = run("fit-device", path, "--out", tmp_path / "fit.yaml", "--bootstrap", 0, "--json")
    assert result.exit_code == 0, result.output
    params = json.loads(result.stdout)["parameters"]
    assert params["set_std_intercept"]["upper_bound"] and params["set_std_intercept"]["status"].startswith("upper bound")
    assert params["read_std_slope"]["status"].startswith("default: no (device, pulse) was read more than once")


def test_duplicate_rows_are_dropped_with_a_warning(tmp_path):
    lines = SAMPLE.read_text().splitlines()
    once = write(tmp_path, "once.csv", lines)
    repeated = lines[1:11]  # a logger that wrote some reads twice; a file of copies is refused (test_hostile_csv.py)
    twice = write(tmp_path, "twice.csv", lines + repeated)
    a = run("fit-device", once, "--out", tmp_path / "a.yaml", "--bootstrap", 0, "--json")
    b = run("fit-device", twice, "--out", tmp_path / "b.yaml", "--bootstrap", 0, "--json")
    assert a.exit_code == 0 and b.exit_code == 0, b.output
    report = json.loads(b.stdout)
    assert any(f"ignored {len(repeated)} exact duplicate row(s)" in w for w in report["warnings"])
    assert report["parameters"] == json.loads(a.stdout)["parameters"]
    human = run("fit-device", twice, "--out", tmp_path / "c.yaml", "--bootstrap", 0)
    assert f"line {len(lines) + 1} repeats line 2" in human.output


def test_same_file_twice_is_refused(tmp_path):
    out = tmp_path / "dev.yaml"
    result = run("fit-device", SAMPLE, SAMPLE, "--out", out)
    assert result.exit_code == 2 and "given twice" in result.output
    assert not out.exists()


def test_absurd_value_is_refused_not_fitted(tmp_path):
    lines = SAMPLE.read_text().splitlines()
    lines[40] = lines[40].rsplit(",", 1)[0] + ",1e300"
    path = write(tmp_path, "absurd.csv", lines)
    result = run("fit-device", path, "--out", tmp_path / "dev.yaml")
    assert result.exit_code == 2 and "absurd.csv:41: column 'g_uS'" in result.output
    assert not (tmp_path / "dev.yaml").exists()


def test_entry_point_bad_flag_is_one_line_exit_2(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", "from pcmmeta.cli.app import main; main()", "fit-device", str(SAMPLE), "--bootstrap", "many"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error:") and "--bootstrap" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "fitted-device.yaml").exists()
