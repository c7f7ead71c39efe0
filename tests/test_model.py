"""The training stage: data, determinism, the gate, parity, leakage, behaviour, the artifact."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from sklearn.dummy import DummyRegressor
from sklearn.model_selection import KFold

from model import data, evaluate, features, pipeline
from model.artifact import METADATA_FILE, ArtifactError, verify_artifact
from model.features import FeatureTransformer
from model.runtime import CompiledModel
from model.schema import FEATURE_NAMES, FEATURES, example_record, schema_fingerprint
from model.train import AUDIT_FILE, main, train
from testkit.live import ROOT

KNN_COLUMNS = slice(28, 32)  # the target-derived columns, see features.feature_names()


@pytest.fixture(scope="module")
def dataset() -> data.Dataset:
    """The real California Housing data through scikit-learn's loader."""
    return data.load_dataset()


@pytest.fixture(scope="module")
def parts(dataset) -> data.Split:
    """The project's fixed train/test split."""
    return data.split(dataset)


@pytest.fixture(scope="module")
def served(trained_model_dir) -> CompiledModel:
    """The served model, loaded the way the service loads it."""
    return CompiledModel(trained_model_dir)


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


def test_two_training_runs_write_the_same_model(tmp_path, trained_model_dir):
    again = train(tmp_path, max_test_rmse=evaluate.DEFAULT_MAX_TEST_RMSE, with_cv=False)
    first = json.loads((trained_model_dir / METADATA_FILE).read_text())
    assert again["model_version"] == first["model_version"]
    assert again["files"] == first["files"]
    for name in first["files"]:
        assert (tmp_path / name).read_bytes() == (trained_model_dir / name).read_bytes(), name


def test_served_model_meets_the_accuracy_goal(trained_model_dir):
    meta = json.loads((trained_model_dir / METADATA_FILE).read_text())
    assert meta["metrics"]["test_rmse"] <= 0.41
    assert meta["metrics"]["test_rmse"] < meta["baselines"]["HistGradientBoosting (first model)"]["test_rmse"]


def test_served_path_equals_lightgbm_over_the_whole_test_split(trained_model_dir, parts, served):
    # independent of training's own check: LightGBM's audit dump, the saved table, both served paths
    import lightgbm as lgb

    booster = lgb.Booster(model_file=str(trained_model_dir / AUDIT_FILE))
    X_test = parts.X_test.to_numpy()
    reference = booster.predict(FeatureTransformer.load(trained_model_dir).transform(X_test))
    batch = served.predict_batch(X_test)
    one_by_one = np.array([served.predict_one(row) for row in X_test.tolist()])
    assert len(reference) == 4128
    assert np.max(np.abs(batch - reference)) <= 1e-4
    assert np.max(np.abs(one_by_one - reference)) <= 1e-4


def test_training_refuses_to_publish_a_model_that_serves_differently():
    with pytest.raises(evaluate.ParityError, match="differ from the trained model"):
        evaluate.check_parity(np.array([1.0, 2.0]), np.array([1.0, 2.001]))
    with pytest.raises(evaluate.ParityError):
        evaluate.check_parity(np.array([1.0]), np.array([np.nan]))


def test_quality_gate_rejects_a_forced_bad_model(parts):
    mean_model = DummyRegressor().fit(parts.X_train, parts.y_train)
    metrics = evaluate.holdout_metrics(parts.y_test.to_numpy(), mean_model.predict(parts.X_test))
    assert metrics.test_rmse > 1.0  # the mean predictor is far off
    with pytest.raises(evaluate.QualityGateError, match=r"test RMSE 1\.\d+ > bound 0\.4300"):
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
    assert list(tmp_path.iterdir()) == []  # no staging folder left behind either


def test_train_cli_without_data_or_network_says_what_to_set(tmp_path, monkeypatch, capsys):
    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(data, "fetch_california_housing", offline)
    assert main(["--out", str(tmp_path / "out"), "--no-cv"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "SCIKIT_LEARN_DATA" in err
    assert not (tmp_path / "out").exists()


def test_train_cli_writes_full_metadata_with_cross_validation(tmp_path, capsys, dataset):
    assert main(["--out", str(tmp_path)]) == 0
    assert "5-fold CV RMSE" in capsys.readouterr().out
    meta = verify_artifact(tmp_path)
    assert len(meta["model_version"]) == 12
    assert meta["features"] == list(FEATURE_NAMES)
    assert meta["model_features"] == features.feature_names()
    assert [f["name"] for f in meta["feature_schema"]] == list(FEATURE_NAMES)
    assert meta["schema_fingerprint"] == schema_fingerprint()
    assert meta["dataset"]["sha256"] == dataset.sha256
    assert meta["dataset"]["rows"] == 20640
    assert {"python", "lightgbm", "scikit-learn", "numpy", "pandas"} <= set(meta["versions"])
    assert "T" in meta["trained_at"]
    metrics = meta["metrics"]
    for key in ("test_rmse", "test_mae", "test_r2", "cv_rmse_mean", "cv_rmse_std", "train_seconds"):
        assert isinstance(metrics[key], float), key
        assert math.isfinite(metrics[key]), key
    assert metrics["test_rmse"] <= 0.41
    assert metrics["cv_rmse_mean"] <= 0.42
    assert meta["parity_max_abs_diff"] <= 1e-4
    assert metrics["test_rmse"] < meta["baselines"]["LinearRegression"]["test_rmse"]


def test_recorded_metrics_match_the_served_model(trained_model_dir, parts, served):
    meta = verify_artifact(trained_model_dir)
    recomputed = evaluate.holdout_metrics(
        parts.y_test.to_numpy(), served.predict_batch(parts.X_test.to_numpy())
    )
    assert recomputed.test_rmse == pytest.approx(meta["metrics"]["test_rmse"], abs=1e-6)


def test_higher_median_income_does_not_lower_the_prediction_on_average(parts, served):
    # Made-With-ML style behavioural check on 500 real test rows: sweep MedInc up, nothing else.
    rows = parts.X_test.to_numpy()[:500]
    col = FEATURE_NAMES.index("MedInc")
    sweep = []
    for income in (1.5, 3.0, 5.0, 8.0, 12.0):
        changed = rows.copy()
        changed[:, col] = income
        sweep.append(served.predict_batch(changed))
    sweep = np.array(sweep)
    assert np.all(np.diff(sweep.mean(axis=1)) > 0)  # the average rises at every step
    assert np.mean(sweep[-1] > sweep[0]) >= 0.99  # and nearly every block group gets dearer


def test_the_example_record_is_priced_like_berkeley(served):
    price = served.predict_one([example_record()[n] for n in FEATURE_NAMES])
    assert 3.0 < price < 5.2  # its true value is 4.526 ($452,600)


# --- leakage: target-derived features never see the target they help predict ---------------


def test_knn_columns_are_where_the_names_say():
    names = features.feature_names()
    assert names[KNN_COLUMNS] == ["knn4_price", "knn8_price", "knn16_price", "knn16_log_price_per_income"]
    assert len(names) == features.N_FEATURES


def test_a_rows_neighbourhood_price_ignores_its_own_folds_targets(parts):
    X, y = parts.X_train.to_numpy()[:4000], parts.y_train.to_numpy()[:4000]
    held = next(iter(KFold(5, shuffle=True, random_state=42).split(X)))[1]
    changed = y.copy()
    changed[held] += 100.0  # rewrite every target of one fold
    before = FeatureTransformer().fit_transform(X, y)
    after = FeatureTransformer().fit_transform(X, changed)
    assert np.array_equal(before[held, KNN_COLUMNS], after[held, KNN_COLUMNS])
    others = np.setdiff1d(np.arange(len(X)), held)
    assert not np.array_equal(before[others, KNN_COLUMNS], after[others, KNN_COLUMNS])


def test_shuffled_targets_give_no_better_than_the_mean_predictor(parts):
    X_train, X_test = parts.X_train.to_numpy(), parts.X_test.to_numpy()
    y_test = parts.y_test.to_numpy()
    shuffled = np.random.default_rng(0).permutation(parts.y_train.to_numpy())
    F = FeatureTransformer().fit_transform(X_train, shuffled)
    for col in range(KNN_COLUMNS.start, KNN_COLUMNS.stop):
        assert abs(np.corrcoef(F[:, col], shuffled)[0, 1]) < 0.05  # out-of-fold: no echo of the target
    fitted = pipeline.fit_model(X_train, shuffled)
    model_rmse = np.sqrt(np.mean((fitted.predict(X_test) - y_test) ** 2))
    mean_rmse = np.sqrt(np.mean((shuffled.mean() - y_test) ** 2))
    assert model_rmse >= mean_rmse


def test_serving_prices_are_means_over_training_rows_only(trained_model_dir, parts):
    X_train, X_test = parts.X_train.to_numpy(), parts.X_test.to_numpy()
    y_train = parts.y_train.to_numpy()
    F = FeatureTransformer.load(trained_model_dir).transform(X_test[:50])
    km = features._project_km
    ref = km(X_train[:, features.LATITUDE], X_train[:, features.LONGITUDE])
    checked = 0
    for row, feats in zip(X_test[:50], F, strict=True):
        cell = features._grid_index(row[None, features.LATITUDE], row[None, features.LONGITUDE])
        lat, lon = features._cell_centres(cell)
        d = ((ref - km(lat, lon)) ** 2).sum(axis=1)
        order = np.argsort(d, kind="stable")
        for col, k in enumerate(features.NEIGHBOURS, start=KNN_COLUMNS.start):
            if np.sum(d <= d[order[k - 1]]) > k:  # a tie at the k-th distance: any tied point may be chosen
                continue
            assert abs(feats[col] - y_train[order[:k]].mean()) <= 1e-5
            checked += 1
    assert checked >= 50  # ties at the k-th distance are common: the census rounds coordinates


# --- the artifact -----------------------------------------------------------------------------

BLOCKED = ("scipy", "sklearn", "pandas", "lightgbm", "joblib")
RUNTIME_ONLY = f"""
import json, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            raise ImportError(name + " is not a runtime dependency")
sys.meta_path.insert(0, Block())
from service.predictor import LoadedModel
import numpy as np
p = LoadedModel.load(__import__("pathlib").Path(sys.argv[1]))
one = p.predict(np.array([[8.3252, 41.0, 6.984127, 1.02381, 322.0, 2.555556, 37.88, -122.23]]))
print(json.dumps({{"one": float(one[0]), "modules": sorted({{m.split(".")[0] for m in sys.modules}})}}))
"""


def test_the_service_predicts_with_training_libraries_blocked(trained_model_dir):
    done = subprocess.run(
        [sys.executable, "-c", RUNTIME_ONLY, str(trained_model_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    result = json.loads(done.stdout)
    assert 3.0 < result["one"] < 5.2
    assert not set(BLOCKED) & set(result["modules"])


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("truncate_forest", "does not match its recorded sha256"),
        ("tamper_table", "does not match its recorded sha256"),
        ("delete_library", "is missing"),
        ("garbage_metadata", "is not valid JSON"),
        ("other_schema", "another feature schema"),
        ("old_format", "format 1"),
        ("no_metadata", "metadata.json missing"),
        ("forged_version", "does not match its own model_version"),
    ],
)
def test_damaged_artifacts_are_refused_with_a_clear_reason(tmp_path, trained_model_dir, damage, message):
    for item in trained_model_dir.iterdir():
        if item.is_file():
            (tmp_path / item.name).write_bytes(item.read_bytes())
    meta_path = tmp_path / METADATA_FILE
    meta = json.loads(meta_path.read_text())
    if damage == "truncate_forest":
        path = tmp_path / "forest_nodes.npy"
        path.write_bytes(path.read_bytes()[:1000])
    elif damage == "tamper_table":
        path = tmp_path / "neighbourhood_table.npy"
        raw = bytearray(path.read_bytes())
        raw[-1] ^= 0xFF
        path.write_bytes(bytes(raw))
    elif damage == "delete_library":
        (tmp_path / "forest.so").unlink()
    elif damage == "garbage_metadata":
        meta_path.write_text("{not json")
    elif damage == "other_schema":
        meta_path.write_text(json.dumps({**meta, "schema_fingerprint": "0" * 16}))
    elif damage == "old_format":
        meta_path.write_text(json.dumps({**meta, "artifact_format": 1}))
    elif damage == "no_metadata":
        meta_path.unlink()
    elif damage == "forged_version":
        meta_path.write_text(json.dumps({**meta, "model_version": "0" * 12}))
    with pytest.raises(ArtifactError, match=message):
        verify_artifact(tmp_path)
