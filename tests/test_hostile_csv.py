"""Hostile input where measurements and support sets enter: CSV files (`fit-device`, `adapt
--support`), the read-time flags of `simulate-measurements`, and output paths. Each refusal is
one line naming the file and line (or the flag), exit code 2, and nothing written."""

import csv
from pathlib import Path

import pytest
from refusal import refused

from pcmmeta.errors import UserInputError
from pcmmeta.io.measurements import MAX_PULSE, MAX_T_S, read_columns_csv, read_measurements, read_xy_csv

SAMPLE = Path(__file__).parent.parent / "examples" / "sample-measurements-SIMULATED.csv"
SAMPLE_LINES = SAMPLE.read_text().splitlines()
HEADER = SAMPLE_LINES[0]
#: A field one character beyond what the csv module reads.
HUGE = "1" * (csv.field_size_limit() + 1)


def write(path: Path, lines: list[str]) -> Path:
    path.write_bytes(("\n".join(lines) + "\n").encode())
    return path


def with_line(number: int, text: str) -> list[str]:
    """The sample with its line `number` (1-based, as error messages count) replaced."""
    lines = list(SAMPLE_LINES)
    lines[number - 1] = text
    return lines


def fields(number: int) -> list[str]:
    return SAMPLE_LINES[number - 1].split(",")


# ------------------------------------------------------------ measurement CSVs (fit-device)
MEASUREMENT_CASES = {
    "field-beyond-csv-limit": (with_line(5, ",".join(fields(5)[:3] + [HUGE])), "bad.csv:5: not readable as CSV: field larger than field limit"),
    "unclosed-quote": (with_line(5, ",".join(fields(5)[:3]) + ',"' + fields(5)[3]), "bad.csv:5: a quoted field runs on to line"),
    "pulse-1e30": (with_line(5, ",".join([fields(5)[0], "1e30", *fields(5)[2:]])), "bad.csv:5: column 'pulse' must be a whole number from 0 to"),
    "pulse-beyond-limit": (with_line(5, ",".join([fields(5)[0], str(MAX_PULSE + 1), *fields(5)[2:]])), "bad.csv:5: column 'pulse' must be a whole number from 0 to"),
    "nul-in-device-id": (with_line(5, "\x00" + SAMPLE_LINES[4]), "bad.csv:5: control character \\x00"),
    "nul-in-header": (with_line(1, HEADER + ",note\x00"), "bad.csv:1: control character \\x00"),
    "extra-field": (with_line(5, SAMPLE_LINES[4] + ",7"), "bad.csv:5: 5 fields, the header has 4"),
    "trailing-comma": (with_line(5, SAMPLE_LINES[4] + ","), "bad.csv:5: 5 fields, the header has 4"),
    "column-twice": (with_line(1, HEADER + ",g_uS"), "bad.csv:1: column 'g_uS' appears 2 times"),
    "file-twice": (SAMPLE_LINES + SAMPLE_LINES[1:], f"bad.csv: every row appears more than once (line {len(SAMPLE_LINES) + 1} repeats line 2)"),
    "file-three-times": (SAMPLE_LINES + SAMPLE_LINES[1:] * 2, "bad.csv: every row appears more than once"),
    "every-row-doubled-in-place": ([HEADER] + [r for r in SAMPLE_LINES[1:] for _ in range(2)], "bad.csv: every row appears more than once (line 3 repeats line 2)"),
}


@pytest.mark.parametrize("lines, message", MEASUREMENT_CASES.values(), ids=MEASUREMENT_CASES.keys())
def test_hostile_measurement_csv_is_one_line_and_fits_nothing(tmp_path, monkeypatch, capsys, lines, message):
    write(tmp_path / "bad.csv", lines)
    err = refused(tmp_path, monkeypatch, capsys, "fit-device", "bad.csv", "--out", "dev.yaml", "--bootstrap", 0)
    assert message in err, err


def test_a_few_repeated_rows_are_still_dropped_with_a_note(tmp_path):
    path = write(tmp_path / "m.csv", SAMPLE_LINES + SAMPLE_LINES[1:4])
    data = read_measurements([path])
    assert data.g_uS.size == len(SAMPLE_LINES) - 1
    assert data.notes and "ignored 3 exact duplicate row(s)" in data.notes[0]


def test_pulse_at_the_limit_is_read(tmp_path):
    path = write(tmp_path / "m.csv", with_line(5, ",".join([fields(5)[0], str(MAX_PULSE), *fields(5)[2:]])))
    assert read_measurements([path]).group_pulse.max() == MAX_PULSE


# ----------------------------------------------------------- support CSVs (adapt --support)
SUPPORT_CASES = {
    "field-beyond-csv-limit": (["x,y", "1,2", f"3,{HUGE}"], "s.csv:3: not readable as CSV: field larger than field limit"),
    "unclosed-quote": (["x,y", '1,"2', "3,4"], "s.csv:2: a quoted field runs on to line 3"),
    "nul-in-ignored-column": (["x,y,note", "1,2,a\x00b", "3,4,c"], "s.csv:2: control character \\x00"),
    "extra-field": (["x,y", "1,2,9", "3,4"], "s.csv:2: 3 fields, the header has 2"),
    "missing-field": (["x,y", "1", "3,4"], "s.csv:2: 1 fields, the header has 2"),
    "column-twice": (["x,y,x", "1,2,3"], "s.csv:1: column 'x' appears 2 times"),
    "rows-twice": (["x,y", "1,2", "3,4", "1,2", "3,4"], "s.csv: every row appears more than once (line 4 repeats line 2)"),
}


@pytest.mark.parametrize("lines, message", SUPPORT_CASES.values(), ids=SUPPORT_CASES.keys())
def test_hostile_support_csv_is_one_user_input_error(tmp_path, lines, message):
    path = write(tmp_path / "s.csv", lines)
    with pytest.raises(UserInputError) as err:
        read_xy_csv(path)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_trajectory_csv_shares_the_support_checks(tmp_path):
    path = write(tmp_path / "s.csv", ["t,theta1,theta2", "0.1,0,0,5"])
    with pytest.raises(UserInputError, match="s.csv:2: 4 fields, the header has 3"):
        read_columns_csv(path, [("t", "theta1", "theta2"), ("t", "x", "y")], "trajectory steps")


def test_support_csv_with_some_repeated_points_is_kept(tmp_path):
    path = write(tmp_path / "s.csv", ["y,x,note", "2,1,a", "2,1,b", "4,3,c"])
    assert read_xy_csv(path) == ([1.0, 1.0, 3.0], [2.0, 2.0, 4.0])


# ------------------------------------------------------- simulate-measurements read times
FLAG_CASES = {
    "nan-read-time": (["--read-times", "nan,1,2"], "--read-times: times must be ≥ 0 s"),
    "inf-read-time": (["--read-times", "1,2,inf"], "--read-times: times must be ≥ 0 s"),
    "read-time-beyond-csv-limit": (["--read-times", f"1,{MAX_T_S * 10:g}"], "--read-times: times must be ≥ 0 s and ≤"),
    "nan-drift-read-time": (["--drift-read-times", "100,nan"], "--drift-read-times: times must be ≥ 0 s"),
    "one-time-repeated": (["--read-times", "2", "--drift-read-times", ""], "--read-times: the repeated protocol reads events at"),
    "one-distinct-time-repeated": (["--read-times", "2,2", "--drift-read-times", ""], "--read-times: the repeated protocol reads events at"),
}


@pytest.mark.parametrize("flags, message", FLAG_CASES.values(), ids=FLAG_CASES.keys())
def test_bad_read_times_name_the_flag(tmp_path, monkeypatch, capsys, flags, message):
    err = refused(tmp_path, monkeypatch, capsys, "simulate-measurements", *flags, "--out", "m.csv")
    assert message in err, err


# ------------------------------------------------------------------------------ output paths
OUTPUT_CASES = {
    "fit-device-out-folder": (["fit-device", SAMPLE, "--bootstrap", 0, "--out", "afolder"], "'--out': afolder: is a folder"),
    "fit-device-out-empty": (["fit-device", SAMPLE, "--bootstrap", 0, "--out", ""], "'--out': empty"),
    "fit-device-plot-folder": (["fit-device", SAMPLE, "--bootstrap", 0, "--out", "d.yaml", "--plot", "plot.png"], "'--plot': plot.png: is a folder"),
    "simulate-out-folder": (["simulate-measurements", "--devices", 2, "--out", "afolder"], "'--out': afolder: is a folder"),
    "simulate-out-empty": (["simulate-measurements", "--devices", 2, "--out", ""], "'--out': empty"),
    "simulate-out-missing-folder": (["simulate-measurements", "--devices", 2, "--out", "nofolder/m.csv"], "'--out': nofolder: no such folder"),
}


@pytest.mark.parametrize("argv, message", OUTPUT_CASES.values(), ids=OUTPUT_CASES.keys())
def test_an_output_path_that_is_no_file_is_a_usage_error(tmp_path, monkeypatch, capsys, argv, message):
    (tmp_path / "afolder").mkdir()
    (tmp_path / "plot.png").mkdir()
    err = refused(tmp_path, monkeypatch, capsys, *argv)
    assert message in err, err
