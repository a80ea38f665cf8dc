import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pcmmeta.cli import app

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
    from pcmmeta.measurements import read_measurements

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
        ([HEADER] + GOOD_ROWS[:-1], "bad.csv: device 'd1' pulse 2 has 2 read(s)"),
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


def test_simulate_then_fit_round_trip(tmp_path):
    csv = tmp_path / "sim.csv"
    result = run("simulate-measurements", "--devices", 30, "--pulses", 6, "--out", csv, "--device", "nandakumar2018-simplified")
    assert result.exit_code == 0, result.output
    assert csv.read_text().startswith("device_id,pulse,t_s,g_uS\n")
    assert run("simulate-measurements", "--read-times", "1,x,3", "--out", tmp_path / "x.csv").exit_code == 2
    assert not (tmp_path / "x.csv").exists()


def test_entry_point_bad_flag_is_one_line_exit_2(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", "from pcmmeta.cli import main; main()", "fit-device", str(SAMPLE), "--bootstrap", "many"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error:") and "--bootstrap" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "fitted-device.yaml").exists()
