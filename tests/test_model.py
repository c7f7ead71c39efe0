"""The training stage: data, determinism, the quality gate, behaviour, and the artifact."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.dummy import DummyRegressor

from model import data, evaluate
from model.artifact import METADATA_FILE, MODEL_FILE, ArtifactError, load_artifact
from model.schema import FEATURE_NAMES, FEATURES, schema_fingerprint
from model.train import main, train


@pytest.fixture(scope="module")
def dataset() -> data.Dataset:
    """The real California Housing data through scikit-learn's loader."""
    return data.load_dataset()


def test_dataset_has_20640_rows_in_schema_order(dataset):
    assert dataset.X.shape == (20640, 8)
    assert tuple(dataset.X.columns) == FEATURE_NAMES
    assert 0.14 < dataset.y.min() < dataset.y.max() < 5.1  # target in $100k


def test_every_real_row_lies_inside_the_schema_domain(dataset):
    # the API's 422 bounds must never reject a real block group
    for feature in FEATURES:
        column = dataset.X[feature.name]
        assert column.min() >= feature.minimum, feature.name
        assert column.max() <= feature.maximum, feature.name


def test_two_training_runs_give_the_same_model_version(tmp_path, trained_model_dir):
    again = train(tmp_path, max_test_rmse=0.50, with_cv=False)
    first = json.loads((trained_model_dir / METADATA_FILE).read_text())
    assert again["model_version"] == first["model_version"]
    assert (tmp_path / MODEL_FILE).read_bytes() == (trained_model_dir / MODEL_FILE).read_bytes()


def test_quality_gate_rejects_a_forced_bad_model(dataset):
    parts = data.split(dataset)
    mean_model = DummyRegressor().fit(parts.X_train, parts.y_train)
    metrics = evaluate.holdout_metrics(parts.y_test.to_numpy(), mean_model.predict(parts.X_test))
    assert metrics.test_rmse > 1.0  # the mean predictor is far off
    with pytest.raises(evaluate.QualityGateError, match=r"test RMSE 1\.\d+ > bound 0\.5000"):
        evaluate.check_quality_gate(metrics.test_rmse, evaluate.DEFAULT_MAX_TEST_RMSE)


def test_quality_gate_rejects_nan():
    with pytest.raises(evaluate.QualityGateError):
        evaluate.check_quality_gate(math.nan, 0.5)


def test_train_cli_fails_the_gate_with_one_line_and_writes_nothing(tmp_path, capsys):
    code = main(["--out", str(tmp_path / "out"), "--max-test-rmse", "0.01", "--no-cv"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1
    assert err.startswith("model.train: quality gate failed: test RMSE")
    assert not (tmp_path / "out").exists()


def test_train_cli_writes_full_metadata_with_cross_validation(tmp_path, capsys, dataset):
    assert main(["--out", str(tmp_path)]) == 0
    assert "5-fold CV RMSE" in capsys.readouterr().out
    meta = json.loads((tmp_path / METADATA_FILE).read_text())
    assert meta["model_version"] == meta["model_sha256"][:12]
    assert meta["features"] == list(FEATURE_NAMES)
    assert [f["name"] for f in meta["feature_schema"]] == list(FEATURE_NAMES)
    assert meta["schema_fingerprint"] == schema_fingerprint()
    assert meta["dataset"]["sha256"] == dataset.sha256
    assert meta["dataset"]["rows"] == 20640
    assert {"python", "scikit-learn", "numpy", "pandas", "joblib"} <= set(meta["versions"])
    assert "T" in meta["trained_at"]
    metrics = meta["metrics"]
    for key in ("test_rmse", "test_mae", "test_r2", "cv_rmse_mean", "cv_rmse_std", "train_seconds"):
        assert isinstance(metrics[key], float), key
        assert math.isfinite(metrics[key]), key
    assert metrics["test_rmse"] <= 0.50
    assert metrics["cv_rmse_mean"] <= 0.50
    assert metrics["test_rmse"] < meta["baselines"]["LinearRegression"]["test_rmse"]


def test_recorded_metrics_match_the_saved_model(trained_model_dir, dataset):
    artifact = load_artifact(trained_model_dir)
    parts = data.split(dataset)
    recomputed = evaluate.holdout_metrics(
        parts.y_test.to_numpy(), artifact.estimator.predict(parts.X_test.to_numpy())
    )
    assert recomputed.test_rmse == pytest.approx(artifact.metadata["metrics"]["test_rmse"], abs=1e-12)


def test_higher_median_income_does_not_lower_the_prediction(trained_model_dir, dataset):
    # Made-With-ML style behavioural check on 500 real test rows: sweep MedInc up, nothing else.
    estimator = load_artifact(trained_model_dir).estimator
    rows = data.split(dataset).X_test.to_numpy()[:500]
    col = FEATURE_NAMES.index("MedInc")
    sweep = []
    for income in (1.5, 3.0, 5.0, 8.0, 12.0):
        changed = rows.copy()
        changed[:, col] = income
        sweep.append(estimator.predict(changed))
    sweep = np.array(sweep)
    assert np.all(np.diff(sweep.mean(axis=1)) > 0)  # the average rises at every step
    assert np.all(sweep[-1] >= sweep[0])  # and no block group gets cheaper from 1.5 to 12


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("truncate", "does not match its recorded sha256"),
        ("delete_model", "is missing"),
        ("garbage_metadata", "is not valid JSON"),
        ("other_schema", "another feature schema"),
        ("no_metadata", "metadata.json missing"),
    ],
)
def test_damaged_artifacts_are_refused_with_a_clear_reason(tmp_path, trained_model_dir, damage, message):
    for name in (MODEL_FILE, METADATA_FILE):
        (tmp_path / name).write_bytes((trained_model_dir / name).read_bytes())
    model_path, meta_path = tmp_path / MODEL_FILE, tmp_path / METADATA_FILE
    if damage == "truncate":
        model_path.write_bytes(model_path.read_bytes()[:1000])
    elif damage == "delete_model":
        model_path.unlink()
    elif damage == "garbage_metadata":
        meta_path.write_text("{not json")
    elif damage == "other_schema":
        meta = json.loads(meta_path.read_text())
        meta["schema_fingerprint"] = "0" * 16
        meta_path.write_text(json.dumps(meta))
    elif damage == "no_metadata":
        meta_path.unlink()
    with pytest.raises(ArtifactError, match=message):
        load_artifact(tmp_path)
