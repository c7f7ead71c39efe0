"""Training's fits spread over the cores (model/parallel.py, model/crossval.py): a serial run's figures."""

from __future__ import annotations

import os

import numpy as np
import pytest

from model import crossval, data, evaluate, parallel, pipeline

SAMPLE_ROWS = 1000  # enough for 5 folds of both models and the spatial cells; small enough to be quick


@pytest.fixture(scope="module")
def sample() -> tuple[np.ndarray, np.ndarray]:
    """A fixed sample of the training split: (X, y)."""
    parts = data.split(data.load_dataset())
    rows = np.random.default_rng(0).choice(len(parts.X_train), SAMPLE_ROWS, replace=False)
    return parts.X_train.to_numpy()[rows], parts.y_train.to_numpy()[rows]


def test_parallel_cross_validation_scores_every_fold_as_the_serial_loop_does(sample, monkeypatch):
    # 2 folds a set instead of 5 (the folds are built here, in this process): 8 fits each way, not 20
    monkeypatch.setattr(evaluate, "CV_FOLDS", 2)
    X, y = sample
    spread = crossval.cross_validate(X, y, workers=2)
    folds = crossval.folds(X)
    for name, fit in crossval.MODELS.items():
        for key in crossval.FOLD_SETS:
            serial = evaluate.cross_validated_rmse(fit, X, y, folds[key])
            # bit for bit, not approximately: the figures in metadata.json must not move
            assert spread[name][key].folds == serial.folds, (name, key)
    assert sum(len(sets[key].folds) for sets in spread.values() for key in sets) == crossval.fit_count()


def test_a_baseline_fitted_in_a_worker_predicts_what_one_fitted_here_predicts(sample):
    # HistGradientBoosting starts one OpenMP thread per core here, one per worker's share there:
    # its trees must not depend on the thread count
    X, y = sample
    here = pipeline.build_previous_model().fit(X, y).predict(X)
    results = parallel.run_all(
        [
            (_fit_and_predict, (pipeline.build_previous_model, X, y)),
            (_fit_and_predict, (pipeline.build_linear_baseline, X, y)),
        ],
        workers=2,
    )
    assert np.array_equal(results[0], here)
    assert np.array_equal(results[1], pipeline.build_linear_baseline().fit(X, y).predict(X))


def _fit_and_predict(build, X, y):
    return build().fit(X, y).predict(X)


def _omp_threads() -> str | None:
    # a module-level function, so it runs in the worker and reads the worker's environment
    return os.environ.get("OMP_NUM_THREADS")


def test_workers_never_start_more_threads_than_their_share_of_the_cores():
    workers = 2
    seen = parallel.run_all([(_omp_threads, ())] * workers, workers)
    for value in seen:
        assert value is not None, "joblib did not cap the worker's OpenMP threads"
        assert int(value) * workers <= max(parallel.cores(), workers)


def test_results_come_back_in_task_order_whatever_order_they_finish_in():
    done: list[tuple[int, int]] = []
    results = parallel.run_all(
        [(pow, (base, 2)) for base in range(6)], 2, on_done=lambda n, total: done.append((n, total))
    )
    assert results == [0, 1, 4, 9, 16, 25]
    assert done == [(n, 6) for n in range(1, 7)]


@pytest.mark.parametrize("raw", ["0", "-1", "two", "1.5"])
def test_a_bad_train_workers_value_is_refused_with_its_name(raw):
    with pytest.raises(parallel.WorkersError, match="TRAIN_WORKERS"):
        parallel.worker_count({"TRAIN_WORKERS": raw})


def test_train_workers_sets_the_worker_count_and_defaults_to_the_cores():
    assert parallel.worker_count({"TRAIN_WORKERS": "3"}) == 3
    assert parallel.worker_count({}) == parallel.cores()
