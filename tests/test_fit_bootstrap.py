"""The bootstrap over devices (pcmmeta/experiment/fit/bootstrap.py): resamples, progress and
standard errors against hand-computed values."""

import numpy as np
import pytest

from pcmmeta.experiment.fit.bootstrap import bootstrap, device_weights, standard_errors


def test_device_weights_are_a_resample_of_every_device():
    rng = np.random.default_rng(0)
    for _ in range(20):
        w = device_weights(rng, 7)
        assert w.shape == (7,) and w.sum() == 7 and w.min() >= 0
    draws = np.stack([device_weights(rng, 5) for _ in range(4000)])
    np.testing.assert_allclose(draws.mean(axis=0), 1.0, atol=0.05)  # each device drawn once on average


def test_bootstrap_gives_one_draw_per_replica_and_reports_progress():
    calls, seen = [], []

    def replica(weights):
        seen.append(weights.copy())
        return {"x": float(weights @ np.arange(len(weights)))}

    draws = bootstrap(replica, 4, 3, seed=1, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert len(draws) == 3 and all(w.sum() == 4 for w in seen)
    again = bootstrap(replica, 4, 3, seed=1)
    assert again == draws  # the seed fixes the resamples
    assert bootstrap(replica, 4, 0, seed=1) == []


def test_standard_errors_are_the_sample_std_of_finite_draws():
    draws = [{"a": 1.0, "b": 2.0, "c": np.nan}, {"a": 3.0, "b": np.inf, "c": 1.0}, {"a": 5.0, "b": 4.0, "c": np.nan}]
    stderr = standard_errors(draws, ["a", "b", "c"])
    assert stderr["a"] == pytest.approx(2.0)  # std of 1, 3, 5 with ddof 1
    assert stderr["b"] == pytest.approx(np.sqrt(2.0))  # 2 and 4; inf left out
    assert stderr["c"] is None  # one finite value
    assert standard_errors(draws[:1], ["a"]) == {}
