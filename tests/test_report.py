"""The report page of a run (`pcmmeta.io.report_page`): run files written by hand, no training."""

from __future__ import annotations

import base64
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from pcmmeta.errors import OutputError, UserInputError
from pcmmeta.io.number_text import mean_sem_text
from pcmmeta.io.report_page import SECTIONS, number_text, write_report

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

RECIPE = """name: tiny
seed: 0
device: nandakumar2018
mode: pcm
network:
  kind: lif
  hidden: [8, 8]
task:
  family: sinusoid
  shots: 5
inner:
  rule: blind-pulse
  steps: 1
train:
  iterations: 6
  log_every: 1
"""

EVALUATION = {
    "recipe": "tiny",
    "mode": "pcm",
    "inner": "blind-pulse",
    "data": None,
    "n_tasks": 20,
    "metric": "mse",
    "loss_before": 4.1,
    "loss_after": 2.9,
    "mse_before": 4.1,
    "mse_after": 2.9,
    "sem_mse_before": 0.31,
    "sem_mse_after": 0.2,
    "mse_per_step": [4.1234, 2.8765],
    "sem_mse_per_step": [0.3123, 0.2049],
    "mse_last_before": 3.5,
    "mse_last_after": 2.5,
    "sem_mse_last_before": 0.4,
    "sem_mse_last_after": 0.3,
    "mse_last_per_step": [3.5, 2.5],
    "sem_mse_last_per_step": [0.4, 0.3],
    "mse_zero": 4.517,
    "pulses_per_task": 3.25,
}

DEPLOY = {
    "run_dir": "runs/tiny",
    "seed": 7,
    "method": "write-verify",
    "n_devices": 3440,
    "tolerance_uS": 0.5,
    "rms_error_uS": 0.3517,
    "sem_rms_error_uS": 0.0042,
    "max_error_uS": 2.25,
    "fraction_within_tolerance": 0.8437,
    "sem_fraction_within_tolerance": 0.0062,
    "pulses_mean": 7.125,
    "pulses_p50": 6.0,
    "pulses_p99": 31.0,
    "pulses_max": 97,
    "set_pulses_mean": 6.5,
    "resets_mean": 0.625,
    "verify_reads_mean": 6.593,
    "time_us_mean": 1.647,
    "sem_time_us": 0.021,
    "energy_pj_mean": 96.25,
    "devices_per_s": 104000.0,
    "devices_at_budget": 2,
    "max_pulses": 100,
    "rms_weight_error": 0.0123,
    "max_weight_error": 0.0876,
    "cost": {"set_s": 5e-08, "reset_s": 5e-08, "read_s": 2e-07, "set_pj": 10.0, "reset_pj": 30.0, "read_pj": 1.0},
    "deploy_time_s": 0.033,
    "layers": {"w_in": {"devices": 32, "rms_error_uS": 0.3311}, "w_out": {"devices": 3408, "rms_error_uS": 0.3519}},
}

COMPARISON = {
    "run_dir": "runs/tiny",
    "seed": 0,
    "cost": DEPLOY["cost"],
    "methods": [
        {
            "method": "write-verify",
            "rms_error_uS": 0.3521,
            "fraction_within_tolerance": 0.8412,
            "time_us_mean": 1.653,
            "verify_reads_mean": 6.611,
            "programming_time_s": 0.0057,
            "metric": {"deployed": {"1": {"mean": 3.2004, "sem": 0.0291}}},
        },
        {
            "method": "learned",
            "rms_error_uS": 0.3498,
            "fraction_within_tolerance": 0.8481,
            "time_us_mean": 1.081,
            "verify_reads_mean": 3.581,
            "chip_time_s": 0.0037,
            "metric": {
                "deployed": {"1": {"mean": 3.2031, "sem": 0.0222}},
                "adapted": {"720": {"mean": 1.9, "sem": 0.01}},
            },
        },
    ],
}

ADAPTED = {
    "run_dir": "runs/tiny",
    "adapted_array": "runs/tiny/adapted-task3-24h.eqx",
    "at_hours": 24.0,
    "steps": 2,
    "task": {"seed": 3, "amplitude": 2.5, "phase": 1.25},
    "shots": 5,
    "metric": "mse",
    "set_name": "query",
    "before": {"mse": 3.871, "mse_last": 3.1},
    "after": {"mse": 1.234, "mse_last": 1.5},
    "per_step": [3.871, 2.2, 1.234],
    "breakdown": {},
    "devices_pulsed": 17,
    "total_pulses": 23,
    "energy_pJ": 230.0,
    "energy_per_pulse_pJ": 10.0,
    "seed": 0,
}

PLAN = {
    "task_seed": 11,
    "at_hours": 48.0,
    "plan_csv": "plan-task11-48h.csv",
    "devices": 40,
    "pulses": 57,
    "support_metric_before": 2.718,
}

DRIFT_CONDITIONS = ("deployed", "adapted", "drift compensation", "compensation + adapted")


def drift_body() -> dict:
    results = []
    for h, hours in enumerate((1.0, 24.0, 720.0)):
        for c, condition in enumerate(DRIFT_CONDITIONS):
            results.append(
                {
                    "hours": hours,
                    "condition": condition,
                    "mse": 3.0 + 0.5 * h - 0.4 * c + 0.00312,
                    "mse_last": 2.0,
                    "sem": 0.04123,
                    "pulses_per_task": 4.0 if "adapted" in condition else 0.0,
                }
            )
    results[0]["mse"] = 3.14159  # deployed at 1 h: 3.14159 ± 0.04123 → "3.142 ± 0.041"
    return {"run_dir": "runs/tiny", "metric": "mse", "tasks": 300, "inner_steps": 1, "seed": 0, "results": results}


def small_png(colour: str = "C0") -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1, 2], [0, 1, 4], color=colour)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=50)
    plt.close(fig)
    return buf.getvalue()


def write_metrics(run_dir: Path, iterations: int) -> None:
    lines = [
        json.dumps(
            {
                "iteration": i,
                "loss": 3.0 / i,
                "loss_before": 4.0 / i,
                "loss_after": 3.0 / i,
                "pulses": 2.0,
                "mse_before": 4.0 / i,
                "mse_after": 3.0 / i,
                "elapsed_s": 0.5 * i,
            }
        )
        for i in range(1, iterations + 1)
    ]
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def make_run(tmp_path: Path, *, full: bool = True) -> Path:
    """A run directory as `meta-train` leaves it (3 of 6 iterations logged, no training curve),
    and with `full`, every chip file too."""
    run_dir = tmp_path / "tiny-20250101-120000"
    run_dir.mkdir()
    (run_dir / "run.json").write_text('{"format": 3}\n')
    (run_dir / "recipe.yaml").write_text(RECIPE)
    write_metrics(run_dir, 3)
    if full:
        (run_dir / "evaluation.json").write_text(json.dumps(EVALUATION))
        (run_dir / "evaluation.png").write_bytes(small_png("C1"))
        (run_dir / "deploy.json").write_text(json.dumps(DEPLOY))
        (run_dir / "programming-comparison.json").write_text(json.dumps(COMPARISON))
        (run_dir / "adapted-task3-24h.json").write_text(json.dumps(ADAPTED))
        (run_dir / "plan-task11-48h.json").write_text(json.dumps(PLAN))
        (run_dir / "drift.json").write_text(json.dumps(drift_body()))
    return run_dir


class PageParser(HTMLParser):
    """Walks the page: elements must nest (every non-void start tag closed by its own end tag),
    and the images, links and sections are collected."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.images: list[dict] = []
        self.urls: list[str] = []
        self.sections: list[str] = []
        self.tables = 0
        self.tags: list[str] = []
        self.doctype = ""
        self.text: list[str] = []

    def handle_decl(self, decl: str) -> None:
        self.doctype = decl

    def handle_starttag(self, tag: str, attrs) -> None:
        attrs = dict(attrs)
        self.tags.append(tag)
        for name in ("src", "href", "action", "srcset", "poster", "data"):
            if attrs.get(name) is not None:
                self.urls.append(attrs[name])
        if tag == "img":
            self.images.append(attrs)
        if tag == "section":
            self.sections.append(attrs.get("id", ""))
        if tag == "table":
            self.tables += 1
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs) -> None:
        self.problems.append(f"self-closing <{tag}/>")

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            self.problems.append(f"end tag of void element </{tag}>")
        elif not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes <{self.stack[-1] if self.stack else '(nothing)'}>")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse_page(path: Path) -> PageParser:
    page = path.read_text(encoding="utf-8")
    parser = PageParser()
    parser.feed(page)
    parser.close()
    assert parser.doctype.lower() == "doctype html"
    assert not parser.problems, parser.problems
    assert parser.stack == [], f"unclosed: {parser.stack}"
    assert parser.tags[:3] == ["html", "head", "meta"]
    assert "body" in parser.tags and "main" in parser.tags
    return parser


def page_text(path: Path) -> str:
    """The page's text as a reader sees it (tags dropped, entities decoded, spaces collapsed)."""
    return " ".join(" ".join(parse_page(path).text).split())


def section_text(path: Path, anchor: str) -> str:
    page = path.read_text(encoding="utf-8")
    match = re.search(rf'<section id="{anchor}">(.*?)</section>', page, re.S)
    assert match, anchor
    parser = PageParser()
    parser.feed(match.group(1))
    return " ".join(" ".join(parser.text).split())


def check_self_contained(parser: PageParser) -> None:
    """Every image is a PNG inside the page; nothing points outside it."""
    from PIL import Image

    for url in parser.urls:
        assert not re.match(r"\s*(https?:)?//", url, re.I), url
        assert url.startswith(("#", "data:image/png;base64,")), url
    for img in parser.images:
        src = img["src"]
        assert src.startswith("data:image/png;base64,"), src[:40]
        data = base64.b64decode(src.split(",", 1)[1], validate=True)
        with Image.open(io.BytesIO(data)) as image:
            assert image.format == "PNG"
            image.load()
            assert image.size[0] > 10 and image.size[1] > 10
        assert img.get("alt")
    for tag in ("script", "link", "iframe", "object", "embed"):
        assert tag not in parser.tags, tag


def test_the_full_page(tmp_path):
    run_dir = make_run(tmp_path)
    summary = write_report(run_dir, tmp_path / "out" / "page.html")
    assert summary.path == tmp_path / "out" / "page.html"
    assert summary.present == SECTIONS and summary.absent == () and summary.unreadable == ()
    parser = parse_page(summary.path)
    check_self_contained(parser)
    assert parser.sections == [
        "run",
        "training",
        "evaluation",
        "deployment",
        "programming-comparison",
        "adaptation",
        "drift",
    ]
    # evaluation.png, the training curve drawn from metrics.jsonl, the drift plot
    assert len(parser.images) == 3
    page = summary.path.read_text()
    assert "http://" not in page and "https://" not in page

    run = section_text(summary.path, "run")
    assert "tiny-20250101-120000" in run and str(run_dir.resolve()) in run
    assert "format 3" in run and "sinusoid" in run and "blind-pulse" in run
    assert "log_every: 1" in run  # the recipe itself, as a block
    assert "<pre>" in page

    training = section_text(summary.path, "training")
    assert "iterations done 3 of 6" in training
    assert "pcmmeta meta-train --resume --run" in training  # 3 of 6: how to finish
    assert "drawn from metrics.jsonl" in training

    evaluation = section_text(summary.path, "evaluation")
    assert "before adaptation 4.12 ± 0.31" in evaluation  # mse per step, 2 significant s.e. digits
    assert "after adaptation (1 step) 2.88 ± 0.20 2.50 ± 0.30" in evaluation  # mse, mse_last
    assert "zero predictor (mse) 4.517" in evaluation
    assert "pulses per task (head) 3.25" in evaluation

    deployment = section_text(summary.path, "deployment")
    assert "devices 3,440" in deployment
    assert "RMS error (µS) 0.3517 ± 0.0042" in deployment
    assert "within tolerance (%) 84.37 ± 0.62" in deployment
    assert "verify reads per device, mean 6.593" in deployment
    assert "programming time per device (µs) 1.647 ± 0.021" in deployment
    assert "programming energy per device (pJ) 96.25" in deployment
    assert "w_out 3,408 0.3519" in deployment and "w_in 32 0.3311" in deployment
    assert "programming seed 7" in deployment and "method write-verify" in deployment
    assert "Measured" not in deployment

    comparison = section_text(summary.path, "programming-comparison")
    assert "figure write-verify learned" in comparison  # one column per method
    assert "RMS error (µS) 0.3521 0.3498" in comparison
    assert "verify reads per device, mean 6.611 3.581" in comparison
    assert "programming time (s) 0.0057 –" in comparison and "chip time (s) – 0.0037" in comparison
    assert "deployed, 1 h 3.200 ± 0.029 3.203 ± 0.022" in comparison
    assert "adapted, 720 h – 1.900 ± 0.010" in comparison

    adaptation = section_text(summary.path, "adaptation")
    assert "adapted-task3-24h.json simulated 24 2" in adaptation
    assert "mse: 3.871 → 1.234; mse_last: 3.1 → 1.5" in adaptation
    assert "[3.871, 2.2, 1.234] 17 23 230" in adaptation
    assert "plan-task11-48h.json 11 48 plan-task11-48h.csv 40 57 2.718" in adaptation

    drift = section_text(summary.path, "drift")
    assert "hours since deployment deployed adapted drift compensation compensation + adapted" in drift
    assert "1 3.142 ± 0.041" in drift
    assert "720 4.003 ± 0.041" in drift  # 3.0 + 0.5·2 + 0.00312
    assert "pulses per task: adapted: 4, 4, 4" in drift


def test_absent_files_name_the_command_that_makes_them(tmp_path):
    run_dir = make_run(tmp_path, full=False)
    summary = write_report(run_dir, tmp_path / "report.html")
    assert summary.present == ("run", "training")
    assert summary.absent == ("evaluation", "deployment", "programming comparison", "adaptation", "drift")
    parser = parse_page(summary.path)
    check_self_contained(parser)
    text = page_text(summary.path)
    arg = str(run_dir)
    assert f"not deployed yet: run pcmmeta deploy --run {arg}" in text
    assert f"no drift evaluation yet: run pcmmeta drift-eval --run {arg}" in text
    assert f"run pcmmeta adapt --run {arg}" in text
    assert f"run pcmmeta deploy --compare --run {arg}" in text
    assert f"pcmmeta import-chip MEASURED.csv --run {arg} for a chip's measurement" in text
    assert f"pcmmeta adapt --run {arg} --plan PULSES.csv writes one for a lab" in text
    assert "not evaluated yet" in text and f"pcmmeta meta-train --resume --run {arg}" in text
    assert "no pulse plans" in text
    assert "could not be read" not in text


def test_the_default_page_is_in_the_run_and_a_run_path_is_quoted(tmp_path):
    run_dir = make_run(tmp_path, full=False)
    spaced = run_dir.rename(tmp_path / "my run")
    summary = write_report(spaced)
    assert summary.path == spaced / "report.html" and summary.path.is_file()
    text = page_text(summary.path)
    assert f"pcmmeta deploy --run '{spaced}'" in text  # pasted into a shell, it works


def test_a_damaged_file_gives_one_line_and_the_page_is_written(tmp_path):
    run_dir = make_run(tmp_path)
    (run_dir / "evaluation.json").write_text('{"metric": "mse", "mse_before": ')  # cut off
    (run_dir / "deploy.json").write_text("[1, 2, 3]")
    (run_dir / "drift.json").write_bytes(b"\xff\xfe garbage")
    (run_dir / "programming-comparison.json").write_text('{"methods": 3}')
    (run_dir / "adapted-task9-1h.json").write_text("not json")
    (run_dir / "evaluation.png").write_bytes(b"GIF89a not a png")
    summary = write_report(run_dir, tmp_path / "report.html")
    assert set(summary.unreadable) == {"evaluation", "deployment", "drift", "programming comparison"}
    assert "adaptation" in summary.present  # one of two reports is readable
    parser = parse_page(summary.path)
    check_self_contained(parser)
    evaluation = section_text(summary.path, "evaluation")
    assert evaluation.startswith("Held-out evaluation evaluation.json could not be read: not valid JSON (line 1")
    assert "Traceback" not in summary.path.read_text()
    assert "deploy.json could not be read: expected a JSON object, found list" in section_text(
        summary.path, "deployment"
    )
    assert "drift.json could not be read: not UTF-8 text" in section_text(summary.path, "drift")
    assert '"methods" is not a list of objects' in section_text(summary.path, "programming-comparison")
    adaptation = section_text(summary.path, "adaptation")
    assert "adapted-task9-1h.json could not be read" in adaptation and "adapted-task3-24h.json" in adaptation


def test_values_of_the_wrong_shape_give_a_line_not_a_traceback(tmp_path):
    run_dir = make_run(tmp_path)
    (run_dir / "evaluation.json").write_text(json.dumps({"metric": "mse", "mse_per_step": "oops", "n_tasks": [1]}))
    (run_dir / "deploy.json").write_text(json.dumps({"layers": [1, 2], "rms_error_uS": "big", "cost": 3}))
    broken = drift_body()
    broken["results"][2] = {"hours": "soon"}
    (run_dir / "drift.json").write_text(json.dumps(broken))
    (run_dir / "metrics.jsonl").write_text('{"iteration": 1, "loss": 2}\n{"iteration": 2, "lo\n')
    summary = write_report(run_dir, tmp_path / "report.html")
    parse_page(summary.path)
    text = page_text(summary.path)
    assert "drift.json could not be read: a result without" in text
    assert "1 line(s) could not be read" in text
    assert "the training curve could not be drawn" in text  # no losses in the readable line
    assert "RMS error (µS) big" in text


def test_a_measured_deployment_is_announced(tmp_path):
    """`deploy.json` and adaptation reports as `import-chip` writes them (a lab's measurement)."""
    run_dir = make_run(tmp_path)
    measurement = {
        "file": "chip-reads-2025-01-01.csv",
        "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "devices": 3440,
        "t_s_min": 12.5,
        "t_s_max": 12.5,
        "times_from": "--at-seconds 12.5",
    }
    deployed = {
        "run_dir": str(run_dir),
        "source": "measured",
        "method": "measured on a chip",
        "measurement": measurement,
        "seed": 0,
        "n_devices": 3440,
        "rms_error_uS": 0.4242,
        "layers": {"w_in": {"devices": 32, "rms_from_target_uS": 0.4011}},
    }
    (run_dir / "deploy.json").write_text(json.dumps(deployed))
    measured_adapt = {
        "adapted_array": str(run_dir / "adapted-task4-2h-measured.eqx"),
        "report_json": str(run_dir / "adapted-task4-2h-measured.json"),
        "task": {"seed": 4},
        "at_hours": 2.0,
        "metric": "mse",
        "set_name": "query",
        "before": {"mse": 3.5},
        "after": {"mse": 1.75},
        "after_simulated": {"mse": 1.5},
        "measurement": measurement,
        "source": "measured",
    }
    (run_dir / "adapted-task4-2h-measured.json").write_text(json.dumps(measured_adapt))
    (run_dir / "adapted-task4-2h-measured.eqx").write_bytes(b"")
    (run_dir / "adapted-task0-1h.eqx").write_bytes(b"")  # an array without a report
    summary = write_report(run_dir, tmp_path / "report.html")
    assert summary.unreadable == ()
    page = summary.path.read_text()
    deployment = section_text(summary.path, "deployment")
    assert deployment.startswith(
        "Deployment Measured on a chip. The deployed array was imported from a chip measurement, not simulated."
    )
    assert 'class="measured"' in page
    assert "file chip-reads-2025-01-01.csv" in deployment
    assert f"sha256 {measurement['sha256']}" in deployment
    assert "devices 3,440" in deployment and "t_s_min 12.5" in deployment
    assert "method measured on a chip" in deployment and "RMS error (µS) 0.4242" in deployment
    assert "layer devices RMS deviation from target (µS) w_in 32 0.4011" in deployment
    adaptation = section_text(summary.path, "adaptation")
    assert "adapted-task4-2h-measured.json measured 2 –" in adaptation
    assert "mse: 3.5 → 1.75 (the plan predicted mse: 1.5)" in adaptation
    assert "adapted-task3-24h.json simulated" in adaptation
    assert "adapted arrays without a report: adapted-task0-1h.eqx" in adaptation


def test_pulse_plans_as_adapt_writes_them(tmp_path):
    run_dir = make_run(tmp_path, full=False)
    plan = {
        "plan_csv": str(tmp_path / "pulses.csv"),
        "plan_json": str(run_dir / "plan-task5.json"),
        "task": {"seed": 5, "amplitude": 1.5},
        "at_hours": 3.0,
        "steps": 1,
        "metric": "mse",
        "support_before": {"mse": 2.25},
        "query_before": {"mse": 2.5},
        "query_after_simulated": {"mse": 1.125},
        "devices": 12,
        "pulses": 19,
        "task_seed": 5,
        "shots": None,
        "support": None,
        "seed": 0,
    }
    (run_dir / "plan-task5.json").write_text(json.dumps(plan))
    summary = write_report(run_dir, tmp_path / "report.html")
    assert "adaptation" in summary.present
    adaptation = section_text(summary.path, "adaptation")
    assert (
        f"plan-task5.json 5 3 1 {tmp_path / 'pulses.csv'} 12 19 mse: 2.25 mse: 2.5 mse: 1.125 seed: 5, amplitude: 1.5"
        in adaptation
    )
    assert "no on-chip adaptation yet" in adaptation


def test_text_from_files_is_escaped(tmp_path):
    run_dir = make_run(tmp_path)
    hostile = '<script>alert("x")</script><img src="http://example.com/a.png">\x1b[31m'
    (run_dir / "recipe.yaml").write_text(RECIPE.replace("name: tiny", f"name: {json.dumps(hostile)}"))
    body = {**DEPLOY, "method": hostile, "layers": {hostile: {"devices": 1, "rms_error_uS": 0.1}}}
    (run_dir / "deploy.json").write_text(json.dumps(body))
    (run_dir / "evaluation.json").write_text(json.dumps({**EVALUATION, "mse_\ud800_per_step": [1.0]}))
    summary = write_report(run_dir, tmp_path / "report.html")
    parser = parse_page(summary.path)
    check_self_contained(parser)  # no script, no outside image: the text stayed text
    page = summary.path.read_text(encoding="utf-8")
    assert "&lt;script&gt;" in page and "\x1b" not in page and "\\u001b" in page
    assert "\\ud800" in page  # a lone surrogate from the JSON, shown as an escape


def test_the_training_curve_file_is_embedded_as_it_is(tmp_path):
    run_dir = make_run(tmp_path, full=False)
    curve = small_png("C3")
    (run_dir / "training-curve.png").write_bytes(curve)
    write_metrics(run_dir, 6)
    summary = write_report(run_dir, tmp_path / "report.html")
    parser = parse_page(summary.path)
    srcs = [img["src"] for img in parser.images]
    assert srcs == ["data:image/png;base64," + base64.b64encode(curve).decode()]
    training = section_text(summary.path, "training")
    assert "iterations done 6 of 6" in training and "--resume" not in training


def test_no_run_directory_and_an_unwritable_page(tmp_path):
    with pytest.raises(UserInputError, match="no such run directory"):
        write_report(tmp_path / "missing", tmp_path / "report.html")
    run_dir = make_run(tmp_path, full=False)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OutputError, match="cannot write"):
        write_report(run_dir, blocker / "report.html")
    assert not (run_dir / "report.html").exists()


def test_a_folder_without_run_files_still_gets_a_page(tmp_path):
    summary = write_report(tmp_path, tmp_path / "report.html")
    assert summary.present == () and summary.absent == SECTIONS
    text = page_text(summary.path)
    assert "no recipe.yaml : not a run directory made by pcmmeta meta-train RECIPE" in text
    assert "no run.json" in text


@pytest.mark.parametrize(
    "mean, sem, text",
    [
        (0.70312, 0.03812, "0.703 ± 0.038"),
        (3.255, 1.02, "3.3 ± 1.0"),
        (1.23456, 0.0996, "1.23 ± 0.10"),  # the s.e. rounds up to a new digit
        (3456.7, 123.4, "3460 ± 120"),
        (-0.0001, 0.01, "0.000 ± 0.010"),
        (0.123456, None, "0.1235"),
        (0.123456, float("nan"), "0.1235"),
        (None, 0.1, "–"),
    ],
)
def test_mean_sem_text(mean, sem, text):
    assert mean_sem_text(mean, sem) == text


def test_number_text():
    assert number_text(3440) == "3,440"
    assert number_text(0.35171) == "0.3517"
    assert number_text(104000.0) == "104,000"
    assert number_text(None) == "–"
    assert number_text([1, 2.5]) == "[1, 2.5]"
    assert number_text({"seed": 3, "amplitude": 2.5}) == "seed: 3, amplitude: 2.5"


@pytest.mark.slow
def test_the_page_is_written_without_jax(tmp_path):
    """The report reads files: it imports neither JAX nor Equinox (a page in a second, on any
    machine that can read the run)."""
    import subprocess
    import sys

    run_dir = make_run(tmp_path)
    code = (
        "import sys; from pathlib import Path; from pcmmeta.io.report_page import write_report; "
        f"write_report(Path({str(run_dir)!r})); "
        "print(sorted(m for m in ('jax', 'equinox') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    assert (run_dir / "report.html").is_file()
