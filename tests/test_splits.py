"""Validation and test are different data: every task family has a validation split that
hyperparameters are chosen on, apart from the test split whose figures are reported."""

import numpy as np
import pytest
from tiny import tiny_recipe

from pcmmeta.core.tasks import SPLITS
from pcmmeta.errors import UserInputError
from pcmmeta.experiment.recipe import validate
from pcmmeta.experiment.train import build_experiment, evaluate, held_out_tasks


def test_validation_tasks_are_not_the_test_tasks_and_are_reproducible():
    exp = build_experiment(tiny_recipe())
    test, _ = held_out_tasks(exp, 8)
    validation, _ = held_out_tasks(exp, 8, split="validation")
    again, _ = held_out_tasks(exp, 8, split="validation")
    np.testing.assert_array_equal(validation.params, again.params)
    assert not np.isclose(test.params[:, None, :], validation.params[None, :, :]).all(-1).any()  # no task in common
    ev_test = evaluate(exp, exp.network, n_tasks=8)
    ev_val = evaluate(exp, exp.network, n_tasks=8, split="validation")
    assert ev_test.after() != ev_val.after()


def test_every_family_has_the_three_splits():
    assert SPLITS == ("train", "validation", "test")
    exp = build_experiment(tiny_recipe())
    for name in SPLITS:
        assert exp.family.split(name) is exp.family  # one distribution: splits are task streams
    with pytest.raises(ValueError, match="split 'dev'"):
        exp.family.split("dev")


def test_validation_seed_must_differ_from_the_test_seed():
    with pytest.raises(UserInputError, match="'eval.validation_seed' must differ from 'eval.seed'"):
        validate({"eval": {"seed": 7, "validation_seed": 7}})


def test_sweep_chooses_on_the_validation_split(tmp_path):
    import importlib.util
    import json
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    recipe = tmp_path / "tiny.yaml"
    user = {k: v for k, v in tiny_recipe().items()}
    user["train"] = {**user["train"], "iterations": 2}
    user["eval"] = {**user["eval"], "tasks": 6}
    recipe.write_text(yaml.safe_dump(user))
    out = subprocess.run(
        [sys.executable, str(Path(__file__).parent.parent / "benchmarks" / "sweep.py"), "--recipe", str(recipe), "--seeds", "0",
         "--runs-dir", str(tmp_path / "runs"), "--set", "train.iterations=2"],  # the recipe's own value
        capture_output=True, text=True, check=True, timeout=600,
    )
    lines = [json.loads(text) for text in out.stdout.splitlines() if text.startswith("{")]
    assert len(lines) == 1 and "trained once" in out.stderr  # the same recipe is not trained twice
    line = lines[0]
    assert line["split"] == "validation"
    run_dir = Path(line["run_dir"])
    assert not (run_dir / "evaluation.json").exists()  # the test split was not looked at
    from pcmmeta.experiment.train import load_run

    exp, state = load_run(run_dir)
    assert line["after"] == pytest.approx(evaluate(exp, state.network, split="validation").after(), rel=1e-6)
    assert "validation tasks" in out.stdout
    spec = importlib.util.spec_from_file_location("sweep", Path(__file__).parent.parent / "benchmarks" / "sweep.py")
    sweep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sweep)
    older = tmp_path / "older.jsonl"
    older.write_text(json.dumps({**line, "split": "test"}) + "\n" + json.dumps(line) + "\n")
    with pytest.raises(ValueError, match="mix validation lines"):
        sweep.rows_from_lines([str(older)])
