"""benchmarks/sweep.py --table: earlier sweeps' JSON lines put together into one table."""

import importlib.util
import json
from pathlib import Path

import pytest

SWEEP = Path(__file__).parent.parent / "benchmarks" / "sweep.py"


@pytest.fixture(scope="module")
def sweep():
    spec = importlib.util.spec_from_file_location("sweep", SWEEP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_lines(path, recipe, config, values):
    with open(path, "a") as f:
        for seed, after in enumerate(values):
            line = {"config": config, "seed": seed, "run_dir": f"runs/{seed}", "wall_s": 1.0, "metric": "mse",
                    "higher_is_better": False, "after": after, "before": 3.0}
            if recipe is not None:
                line["recipe"] = recipe
            f.write(json.dumps(line) + "\n")


def test_two_recipes_baselines_are_two_rows(sweep, tmp_path):
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    write_lines(first, "sine-quick", {}, [1.20, 1.25, 1.23])
    write_lines(first, "sine-quick", {"network.tau_out": 0.005}, [0.91, 0.86, 0.97])
    write_lines(second, "sine-quick-copy", {}, [0.72, 0.88, 0.82])
    rows, metric, higher_is_better, seeds = sweep.rows_from_lines([str(first), str(second)])
    assert list(rows) == ["sine-quick: baseline (recipe)", "sine-quick: network.tau_out=0.005", "sine-quick-copy: baseline (recipe)"]
    assert rows["sine-quick: baseline (recipe)"]["after"] == {0: 1.20, 1: 1.25, 2: 1.23}
    assert rows["sine-quick-copy: baseline (recipe)"]["after"] == {0: 0.72, 1: 0.88, 2: 0.82}
    assert (metric, higher_is_better, seeds) == ("mse", False, [0, 1, 2])
    assert sweep.paired_verdict(rows["sine-quick: network.tau_out=0.005"]["after"], rows["sine-quick: baseline (recipe)"]["after"], False) == "better"


def test_one_recipe_rows_keep_plain_names_and_seeds_merge(sweep, tmp_path):
    # lines from before the "recipe" key existed and lines of the same recipe are one sweep
    first, more = tmp_path / "a.jsonl", tmp_path / "more.jsonl"
    write_lines(first, None, {}, [1.0, 1.1])
    write_lines(first, None, {"inner.pulse_threshold": 0.3}, [1.2, 1.32])
    with open(more, "w") as f:
        for seed, (base, row) in {2: (1.05, 1.25)}.items():
            for config, after in (({}, base), ({"inner.pulse_threshold": 0.3}, row)):
                f.write(json.dumps({"config": config, "seed": seed, "wall_s": 1.0, "metric": "mse", "after": after}) + "\n")
    rows, _, _, seeds = sweep.rows_from_lines([str(first), str(more)])
    assert list(rows) == ["baseline (recipe)", "inner.pulse_threshold=0.3"]
    assert seeds == [0, 1, 2] and rows["inner.pulse_threshold=0.3"]["after"] == {0: 1.2, 1: 1.32, 2: 1.25}
    assert sweep.paired_verdict(rows["inner.pulse_threshold=0.3"]["after"], rows["baseline (recipe)"]["after"], False) == "worse"
    # the same shift on every seed is a difference (s.e. 0), no shift is none
    assert sweep.paired_verdict({0: 1.2, 1: 1.3, 2: 1.25}, {0: 1.0, 1: 1.1, 2: 1.05}, False) == "worse"
    assert sweep.paired_verdict({0: 1.0, 1: 1.1, 2: 1.05}, {0: 1.0, 1: 1.1, 2: 1.05}, False) == "no difference"


def test_not_a_json_line_names_file_and_line(sweep, tmp_path):
    path = tmp_path / "bad.jsonl"
    write_lines(path, "sine-quick", {}, [1.0])
    with open(path, "a") as f:
        f.write("{not json\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: not a JSON line"):
        sweep.rows_from_lines([str(path)])


def test_lines_without_a_recipe_name_join_the_same_recipes_lines(sweep, tmp_path, capsys):
    # an old sweep (no "recipe" key) and new seeds of the same recipe: one table, plain names
    old, new = tmp_path / "old.jsonl", tmp_path / "new.jsonl"
    write_lines(old, None, {}, [1.0, 1.1])
    with open(new, "w") as f:
        f.write(json.dumps({"recipe": "sine-quick", "config": {}, "seed": 2, "wall_s": 1.0, "metric": "mse", "after": 1.05}) + "\n")
        # the same seed again with another value: kept (the last line), and said on stderr
        f.write(json.dumps({"recipe": "sine-quick", "config": {}, "seed": 1, "wall_s": 1.0, "metric": "mse", "after": 1.2}) + "\n")
    rows, _, _, seeds = sweep.rows_from_lines([str(old), str(new)])
    assert list(rows) == ["baseline (recipe)"] and seeds == [0, 1, 2]
    assert rows["baseline (recipe)"]["after"] == {0: 1.0, 1: 1.2, 2: 1.05}
    assert "seed 1: a second line (1.2000) replaces 1.1000" in capsys.readouterr().err
