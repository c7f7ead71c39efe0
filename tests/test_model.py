"""The training stage: data, determinism, the gate, parity, leakage, behaviour, the artifact."""

from __future__ import annotations

import io
import json
import math
import re
import subprocess
import sys

import numpy as np
import pytest
from sklearn.dummy import DummyRegressor
from sklearn.model_selection import KFold

from model import cache, data, evaluate, features, pipeline
from model import train as train_module
from model.artifact import METADATA_FILE, REPORT_DIR, ArtifactError, verify_artifact
from model.features import FeatureTransformer
from model.progress import Progress
from model.runtime import CompiledModel
from model.schema import FEATURE_NAMES, FEATURES, example_record, schema_fingerprint
from model.train import AUDIT_FILE, main, train
from testkit.live import ROOT

# The target-derived columns (neighbourhood prices), see features.feature_names().
KNN_COLUMNS = slice(len(features.ROW_FEATURES), len(features.ROW_FEATURES) + 4)


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


def test_training_reads_the_test_split_only_after_every_fit_and_repeats_bit_for_bit(
    tmp_path, monkeypatch, trained_model_dir
):
    # The protocol: CV and every fit use the training rows; the test split is read at the end.
    events: list[str] = []
    real_split, real_fit = data.split, pipeline.fit_model

    class Watched:
        def __init__(self, parts: data.Split) -> None:
            self.X_train, self.y_train, self._parts = parts.X_train, parts.y_train, parts

        @property
        def X_test(self):  # noqa: N802 - Split's own field name
            events.append("test")
            return self._parts.X_test

        @property
        def y_test(self):
            events.append("test")
            return self._parts.y_test

    def fit(X, y, **kwargs):
        events.append(f"fit {len(X)}")
        return real_fit(X, y, **kwargs)

    def cross_validate(X, y, **_):
        events.append(f"cv {len(X)}")
        # stand-in figures that pass the quality gate against the baseline: the served design
        # 0.04 better on the random split, level on the spatial CV
        spatial, result = evaluate.CVResult((0.5, 0.6)), evaluate.CVResult
        return {
            train_module.SERVED_NAME: {"cv_rmse": result((0.40, 0.41)), "spatial_cv_rmse": spatial},
            pipeline.PLAIN_LGBM_NAME: {"cv_rmse": result((0.44, 0.45)), "spatial_cv_rmse": spatial},
        }

    monkeypatch.setattr(data, "split", lambda dataset: Watched(real_split(dataset)))
    monkeypatch.setattr(pipeline, "fit_model", fit)
    monkeypatch.setattr(train_module, "cross_validate", cross_validate)
    # one worker: the fits run in this process, where the watchers are (the session's model was
    # fitted in worker processes, so the byte comparison below also pins parallel = serial)
    lines = io.StringIO()
    progress = Progress(train_module.STAGES, stream=lines)
    saved = tmp_path.parent / f"{tmp_path.name}.evaluation.json"
    meta = train(
        tmp_path,
        max_test_rmse=evaluate.DEFAULT_MAX_TEST_RMSE,
        workers=1,
        progress=progress,
        save_evaluation=saved,
    )
    # the published run's CV figures, saved with the fingerprint metadata records
    assert cache.read(saved)["fingerprint"] == meta["evaluation"]["fingerprint"]["sha256"]
    assert meta["evaluation"]["fingerprint"]["figures_from"] == "computed in this run"
    # every stage announced, with what comes next, then closed with its time, in the declared order
    text, total = lines.getvalue().splitlines(), len(train_module.STAGES)
    opened = [next(i for i, ln in enumerate(text) if f"] {n}/{total} {name}" in ln and "(next: " in ln)
              for n, name in enumerate(train_module.STAGES, start=1)]  # fmt: skip
    closed = [next(i for i, ln in enumerate(text) if f"] {n}/{total} {name} done in " in ln)
              for n, name in enumerate(train_module.STAGES, start=1)]  # fmt: skip
    assert opened == sorted(opened)
    assert all(o < c for o, c in zip(opened, closed, strict=True))
    n_train = meta["evaluation"]["training_rows"]
    assert n_train == 16512
    assert events[:2] == [f"cv {n_train}", f"fit {n_train}"]
    assert "test" in events
    assert all(e.startswith(("cv", "fit")) for e in events[: events.index("test")])
    assert all(e == "test" for e in events[events.index("test") :])  # no fit after the test split
    assert meta["metrics"]["spatial_cv_rmse_mean"] == pytest.approx(0.55)
    # One training run is costly, so this one also pins determinism: the session's model files
    # again, byte for byte (the report differs: it shows this run's stand-in CV figures).
    first = json.loads((trained_model_dir / METADATA_FILE).read_text())
    model_files = {n: h for n, h in first["files"].items() if not n.startswith(REPORT_DIR)}
    assert {n: meta["files"][n] for n in model_files} == model_files
    for name in model_files:
        assert (tmp_path / name).read_bytes() == (trained_model_dir / name).read_bytes(), name


def test_spatial_cv_folds_share_no_cell_and_cover_every_row(parts):
    X = parts.X_train.to_numpy()
    cells = evaluate.spatial_cells(X)
    folds = evaluate.spatial_folds(X)
    assert len(folds) == evaluate.CV_FOLDS
    assert np.array_equal(np.sort(np.concatenate([held for _, held in folds])), np.arange(len(X)))
    for fit_rows, held_rows in folds:
        assert not set(cells[fit_rows]) & set(cells[held_rows])
    # a 1 degree cell: Berkeley (37.88, -122.23) and San Francisco share one, Los Angeles does not
    sf, berkeley, la = evaluate.spatial_cells(
        np.array([[0] * 6 + [37.77, -122.42], [0] * 6 + [37.88, -122.23], [0] * 6 + [34.05, -118.24]])
    )
    assert sf == berkeley != la


def test_a_spatial_folds_model_never_sees_the_folds_rows(parts):
    # cross_validated_rmse hands the fit only the fold's training rows, so the neighbourhood
    # prices (refitted inside fit) cannot come from the held-out cells.
    X, y = parts.X_train.to_numpy(), parts.y_train.to_numpy()
    cells = evaluate.spatial_cells(X)
    folds = evaluate.spatial_folds(X)
    seen: list[np.ndarray] = []

    def fit(X_fit, y_fit):
        seen.append(evaluate.spatial_cells(X_fit))
        return DummyRegressor().fit(X_fit, y_fit)

    result = evaluate.cross_validated_rmse(fit, X, y, folds)
    assert len(result.folds) == len(folds) == len(seen)
    for fitted_cells, (_, held_rows) in zip(seen, folds, strict=True):
        assert not set(fitted_cells) & set(cells[held_rows])
    assert result.mean == pytest.approx(np.mean(result.folds))


def test_a_cv_folds_lookup_gives_the_serving_tables_values(parts):
    # CV folds skip building the 1.1 M-cell table; their held-out rows must still get its values.
    X, y = parts.X_train.to_numpy()[:3000], parts.y_train.to_numpy()[:3000]
    direct, with_table = FeatureTransformer(), FeatureTransformer()
    F_direct = direct.fit_transform(X, y, build_table=False).features
    F_table = with_table.fit_transform(X, y).features
    assert direct.table is None
    assert np.array_equal(F_direct, F_table, equal_nan=True)  # NaN: prices of far neighbours
    X_test = parts.X_test.to_numpy()[:500]
    assert np.array_equal(direct.transform(X_test), with_table.transform(X_test), equal_nan=True)


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


def not_progress(err: str) -> str:
    """stderr without the progress lines (model/progress.py: each starts with `[  12.3 s]`)."""
    return "".join(ln for ln in err.splitlines(keepends=True) if not re.match(r"\[ *\d+\.\d s\] ", ln))


def test_train_cli_fails_the_gate_with_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch):
    # CV figures that pass the baseline gate (issue 23), so the test-RMSE bound is what fails
    folds = {train_module.SERVED_NAME: (0.40, 0.41, 0.39, 0.40, 0.42), pipeline.PLAIN_LGBM_NAME: (0.45,) * 5}
    stand_in = {
        name: {key: evaluate.CVResult(folds[name]) for key in ("cv_rmse", "spatial_cv_rmse")}
        for name in folds
    }
    monkeypatch.setattr(train_module, "cross_validate", lambda X, y, **_: stand_in)
    saved = tmp_path / "evaluation.json"
    code = main(["--out", str(tmp_path / "out"), "--max-test-rmse", "0.01", "--save-evaluation", str(saved)])
    err = not_progress(capsys.readouterr().err)
    assert code == 1
    assert err.count("\n") == 1
    assert err.startswith("model.train: quality gate failed: test RMSE")
    assert not (tmp_path / "out").exists()
    assert list(tmp_path.iterdir()) == []  # no staging folder, and no saved CV figures, left behind


def test_train_cli_without_data_or_network_says_what_to_set(tmp_path, monkeypatch, capsys):
    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(data, "fetch_california_housing", offline)
    assert main(["--out", str(tmp_path / "out"), "--no-cv"]) == 2
    err = not_progress(capsys.readouterr().err)
    assert err.count("\n") == 1
    assert "SCIKIT_LEARN_DATA" in err
    assert not (tmp_path / "out").exists()


def test_train_cli_writes_full_metadata_with_cross_validation(tmp_path, capsys, dataset):
    assert main(["--out", str(tmp_path)]) == 0
    assert "spatial CV RMSE" in capsys.readouterr().out
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
    cv_keys = ("cv_rmse_mean", "cv_rmse_std", "spatial_cv_rmse_mean", "spatial_cv_rmse_std")
    for key in ("test_rmse", "test_mae", "test_r2", *cv_keys, "train_seconds"):
        assert isinstance(metrics[key], float), key
        assert math.isfinite(metrics[key]), key
    assert metrics["test_rmse"] <= 0.41
    assert metrics["cv_rmse_mean"] <= 0.42
    # the protocol, and both models' CV figures on the same folds
    evaluation = meta["evaluation"]
    assert set(evaluate.PROTOCOL) <= set(evaluation)
    assert evaluation["training_rows"] == 16512
    served, plain = (
        evaluation["models"][train_module.SERVED_NAME],
        evaluation["models"][pipeline.PLAIN_LGBM_NAME],
    )
    assert {k: served[k] for k in cv_keys} == {k: metrics[k] for k in cv_keys}
    assert len(served["spatial_cv_rmse_folds"]) == len(plain["spatial_cv_rmse_folds"]) == evaluate.CV_FOLDS
    assert {k: meta["baselines"][pipeline.PLAIN_LGBM_NAME][k] for k in cv_keys} == {
        k: plain[k] for k in cv_keys
    }
    # unseen places are harder than random splits, for every model
    assert metrics["spatial_cv_rmse_mean"] > metrics["cv_rmse_mean"]
    # Unseen places: within 0.01 of plain LightGBM (the design served before was 0.093 behind; the
    # issue's "no worse" is missed by 0.009, see docs/model.md), and clearly better on random splits.
    assert metrics["spatial_cv_rmse_mean"] <= plain["spatial_cv_rmse_mean"] + 0.01
    assert metrics["cv_rmse_mean"] < plain["cv_rmse_mean"] - 0.03
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
    assert len(names) == features.N_FEATURES == len(set(names))


def test_both_feature_paths_compute_the_declared_columns_bit_for_bit(dataset):
    # One declaration (ROW_COLUMNS) feeds the batch path and the one-row path; they must agree
    # exactly, and every declared column is one the model sees (or an intermediate it uses).
    X = dataset.X.to_numpy()[::10]
    table = np.arange(features.GRID_ROWS * features.GRID_COLS * len(features.TABLE_COLUMNS), dtype=np.float32)
    transformer = FeatureTransformer(table=table.reshape(-1, len(features.TABLE_COLUMNS)))
    batch = transformer.transform(X)
    assert batch.shape == (len(X), features.N_FEATURES)
    for row, expected in zip(X.tolist(), batch, strict=True):
        assert transformer.transform_row(row) == expected.tolist()
    names = features.feature_names()
    assert names[: len(features.ROW_FEATURES)] == [c.name for c in features.ROW_COLUMNS if c.kept]
    # a spot check of the declarations' meaning: rooms per person, and km to San Francisco is 0 there
    col = names.index("rooms_per_person")
    assert np.allclose(batch[:, col], X[:, 2] / X[:, 5])
    sf = [37.7793, -122.4193]
    at_sf = transformer.transform_row([3.0, 20.0, 5.0, 1.0, 1000.0, 3.0, *sf])
    assert at_sf[names.index("km_san_francisco")] == 0.0


@pytest.mark.parametrize("scheme", [name for name, _ in features.OOF_SCHEMES])
def test_a_rows_neighbourhood_price_ignores_its_own_folds_targets(parts, scheme, monkeypatch):
    # Every price kept, however far its neighbours: masking far prices only removes information,
    # and on this 4,000-row sample it would hide the other cells' rows the rewrite must reach.
    monkeypatch.setattr(features, "NEAR_KM", math.inf)
    X, y = parts.X_train.to_numpy()[:4000], parts.y_train.to_numpy()[:4000]
    if scheme == "random":
        held = next(iter(KFold(5, shuffle=True, random_state=42).split(X)))[1]
    else:  # every row of one 1 degree cell: its prices must come from other cells only
        cells = features.cell_ids(X, features.OOF_CELL_DEGREES)
        held = np.flatnonzero(cells == cells[0])
    changed = y.copy()
    changed[held] += 100.0  # rewrite every target of one fold
    schemes = [name for name, _ in features.OOF_SCHEMES]
    first = schemes.index(scheme) * len(X)  # the rows come once per scheme, in order
    block = slice(first, first + len(X))
    before = FeatureTransformer().fit_transform(X, y, build_table=False).features
    after = FeatureTransformer().fit_transform(X, changed, build_table=False).features
    assert np.array_equal(before[block][held, KNN_COLUMNS], after[block][held, KNN_COLUMNS], equal_nan=True)
    others = np.setdiff1d(np.arange(len(X)), held)
    assert not np.array_equal(
        before[block][others, KNN_COLUMNS], after[block][others, KNN_COLUMNS], equal_nan=True
    )


def test_shuffled_targets_give_no_better_than_the_mean_predictor(parts):
    X_train, X_test = parts.X_train.to_numpy(), parts.X_test.to_numpy()
    y_test = parts.y_test.to_numpy()
    shuffled = np.random.default_rng(0).permutation(parts.y_train.to_numpy())
    rows = FeatureTransformer().fit_transform(X_train, shuffled, build_table=False)
    for col in range(KNN_COLUMNS.start, KNN_COLUMNS.stop):
        known = np.isfinite(rows.features[:, col])  # prices of far neighbours are missing
        assert known.mean() > 0.5
        assert (
            abs(np.corrcoef(rows.features[known, col], rows.target[known])[0, 1]) < 0.05
        )  # out-of-fold: no echo of the target
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
        if np.sqrt(d[order[15]]) > features.NEAR_KM:  # far neighbours: the prices are missing
            assert np.isnan(feats[KNN_COLUMNS]).all()
            continue
        for col, k in enumerate(features.NEIGHBOURS, start=KNN_COLUMNS.start):
            if np.sum(d <= d[order[k - 1]]) > k:  # a tie at the k-th distance: any tied point may be chosen
                continue
            assert abs(feats[col] - y_train[order[:k]].mean()) <= 1e-5
            checked += 1
    assert checked >= 50  # ties at the k-th distance are common: the census rounds coordinates


def test_neighbourhood_prices_are_missing_exactly_where_the_neighbours_are_far(trained_model_dir, parts):
    F = FeatureTransformer.load(trained_model_dir).transform(parts.X_test.to_numpy())
    km16 = F[:, features.feature_names().index("knn16_km")]
    missing = np.isnan(F[:, KNN_COLUMNS])
    assert (missing.all(axis=1) == (km16 > features.NEAR_KM)).all()
    assert (missing.any(axis=1) == missing.all(axis=1)).all()
    assert 0 < missing[:, 0].sum() < 0.2 * len(F)  # some rural rows, never most of them
    assert np.isfinite(np.delete(F, np.arange(KNN_COLUMNS.start, KNN_COLUMNS.stop), axis=1)).all()


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
