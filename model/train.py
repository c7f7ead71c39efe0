"""Train, evaluate, gate, export and write the artifact: `python -m model.train`.

raw rows -> features (neighbourhood prices out of fold) -> LightGBM -> quality gate ->
export (lookup table, flattened forest, compiled evaluator) -> parity check of the served path
against LightGBM over the whole test split -> artifact (+ report) published in one move.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sklearn
from threadpoolctl import threadpool_limits

from model import artifact, cache, data, evaluate, forest, parallel, pipeline, profile, quality, report
from model.artifact import AUDIT_FILE
from model.crossval import FOLD_SETS, SERVED_NAME, cross_validate, fit_count
from model.crossval import MODELS as CV_MODELS
from model.features import feature_names
from model.progress import Progress, Silent
from model.runtime import CompiledModel
from model.schema import FEATURE_NAMES, schema_as_dict
from model.scores import CV_FIGURES

DEFAULT_MODEL_DIR = "artifacts"
# The run's stages, in order, as the progress lines on stderr name them.
STAGES = (
    "load data",
    "cross-validation",
    "fit the served model and the baselines",
    "score the test split",
    "export and parity check",
    "report and publish",
)
# The baselines fitted beside the served model on the training rows (each a fresh estimator).
BASELINES = {
    "LinearRegression": pipeline.build_linear_baseline,
    "HistGradientBoosting (first model)": pipeline.build_previous_model,
    pipeline.PLAIN_LGBM_NAME: pipeline.build_plain_lightgbm,
}


def library_versions() -> dict[str, str]:
    """The versions that decide what the model learns."""
    import lightgbm as lgb

    return {
        "python": platform.python_version(),
        "lightgbm": lgb.__version__,
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
    }


def _served_predictions(predictor: CompiledModel, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both serving paths over the same rows: one row at a time, and one batch."""
    one_by_one = np.array([predictor.predict_one(row) for row in X.tolist()])
    return one_by_one, predictor.predict_batch(X)


def fit_fresh(build: Any, X: np.ndarray, y: np.ndarray) -> Any:
    """A fresh estimator from build(), fitted on (X, y) (module level, so a worker process can run it)."""
    return build().fit(X, y)


def _final_fits(
    X_train: np.ndarray, y_train: np.ndarray, workers: int, progress: Progress
) -> tuple[Any, dict]:
    """The served model and every baseline, fitted on the training rows, spread over the workers."""
    tasks: list[parallel.Task] = [(pipeline.fit_model, (X_train, y_train))]
    tasks += [(fit_fresh, (build, X_train, y_train)) for build in BASELINES.values()]
    fitted, *baselines = parallel.run_all(
        tasks, workers, lambda done, total: progress.advance(done, total, "fits")
    )
    return fitted, dict(zip(BASELINES, baselines, strict=True))


def _evaluation_figures(
    X_train: np.ndarray,
    y_train: np.ndarray,
    *,
    reuse: Path | None,
    workers: int,
    progress: Progress,
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """The CV results, reused from `reuse` when its fingerprint is this run's, else computed.

    Returns:
        (the CV results, metadata's `evaluation.fingerprint`: the sha256, its inputs, and where the
        figures came from).
    """
    stamp = cache.fingerprint(X_train, y_train)
    cv, reason = cache.lookup(reuse, stamp) if reuse is not None else (None, "")
    if cv is not None:
        progress.begin("cross-validation", f"reused: {reason}")
        source = f"reused from {reuse} (fingerprint matched)"
        # the saved file's key order is not the run's: metadata and the report list models as computed
        cv = {name: {key: cv[name][key] for key in FOLD_SETS} for name in CV_MODELS}
    else:
        detail = f"{fit_count()} fits over {workers} worker{'s' if workers > 1 else ''}"
        progress.begin("cross-validation", f"{detail}{f'; not reused: {reason}' if reason else ''}")
        cv = cross_validate(
            X_train,
            y_train,
            workers=workers,
            on_fold=lambda done, total: progress.advance(done, total, "fits"),
        )
        source = "computed in this run"
    return cv, {"sha256": stamp.sha256, "figures_from": source, "inputs": stamp.inputs}


def baseline_gate(cv: dict[str, dict[str, Any]] | None) -> list[quality.Check] | None:
    """The quality gate against plain LightGBM, on the CV folds just measured (None without CV).

    Raises:
        quality.BaselineGateError: The served design does not earn its features.
    """
    if cv is None:
        return None
    served, plain = cv[SERVED_NAME], cv[pipeline.PLAIN_LGBM_NAME]
    checks = quality.check({f: served[f.key] for f in CV_FIGURES}, {f: plain[f.key] for f in CV_FIGURES})
    quality.enforce(checks, pipeline.PLAIN_LGBM_NAME)
    return checks


def _evaluation(
    X_train: np.ndarray, cv: dict[str, dict[str, Any]] | None, fingerprint: dict[str, Any] | None = None
) -> dict[str, Any]:
    """metadata.json's `evaluation`: the protocol, and the CV figures of every model measured.

    `fingerprint` (model/cache.py) says what the figures were computed from and whether this run
    computed them or reused a saved evaluation with the same fingerprint; None without CV.
    """
    return {
        **evaluate.PROTOCOL,
        "fingerprint": fingerprint,
        "training_rows": len(X_train),
        "spatial_cells": len(np.unique(evaluate.spatial_cells(X_train))),
        "models": None
        if cv is None
        else {
            name: {
                f"{key}_{stat}": value
                for key, result in scores.items()
                for stat, value in (("mean", result.mean), ("std", result.std), ("folds", list(result.folds)))
            }
            for name, scores in cv.items()
        },
    }


def train(
    out_dir: Path,
    max_test_rmse: float,
    *,
    with_cv: bool = True,
    reuse_evaluation: Path | None = None,
    save_evaluation: Path | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run the whole training stage and publish the artifact.

    The protocol (evaluate.PROTOCOL): every figure used to choose the model is a cross-validated
    one on the training rows; the test split is scored once, by the final model, at the end.

    Args:
        out_dir: Where the artifact goes (replaced whole, only when every check passed).
        max_test_rmse: The quality gate's bound on holdout RMSE ($100k).
        with_cv: Whether to run the random-split and spatial CV on the training rows (twenty
            more fits: the served design and the plain LightGBM, 5 folds each).
        reuse_evaluation: A saved evaluation (model/cache.py) whose CV figures are taken instead
            of refitting when its fingerprint is this run's; None always computes them.
        save_evaluation: Where to save this run's CV figures with their fingerprint once the artifact
            is published; None: nowhere.
        workers: Fits running at once (model/parallel.py); None: TRAIN_WORKERS, else one per core.
        progress: Where the stage lines go; None prints nothing.

    Returns:
        The metadata that was written.

    Raises:
        QualityGateError: The model misses the bound on the test RMSE; nothing is written.
        quality.BaselineGateError: The served design does not beat plain LightGBM on the random-split
            CV by the declared margin, or trails it on the spatial CV by more; nothing is written.
        ParityError: The exported model does not predict what LightGBM predicts; nothing is written.
    """
    progress = progress or Silent(STAGES)
    workers = parallel.worker_count() if workers is None else workers
    progress.begin("load data")
    dataset = data.load_dataset()
    parts = data.split(dataset)
    X_train, y_train = parts.X_train.to_numpy(), parts.y_train.to_numpy()

    # Training rows only, before the test split is read at all.
    cv, fingerprint = None, None
    if with_cv:
        cv, fingerprint = _evaluation_figures(
            X_train, y_train, reuse=reuse_evaluation, workers=workers, progress=progress
        )
    else:
        progress.begin("cross-validation", "skipped (--no-cv)")
    baseline_checks = baseline_gate(cv)  # before the final fits: a design that fails costs no more
    progress.begin("fit the served model and the baselines", f"{1 + len(BASELINES)} fits")
    fitted, baselines = _final_fits(X_train, y_train, workers, progress)

    # The test split, once, at the end: nothing below feeds back into what was fitted above.
    progress.begin("score the test split")
    X_test, y_test = parts.X_test.to_numpy(), parts.y_test.to_numpy()
    reference = fitted.predict(X_test)
    holdout = evaluate.holdout_metrics(y_test, reference)
    evaluate.check_quality_gate(holdout.test_rmse, max_test_rmse)
    baseline_metrics = {
        name: evaluate.holdout_metrics(y_test, model.predict(X_test)).__dict__
        for name, model in baselines.items()
    }
    served_cv = None if cv is None else cv[SERVED_NAME]
    metrics: dict[str, float | None] = {
        **holdout.__dict__,
        "cv_rmse_mean": None if served_cv is None else served_cv["cv_rmse"].mean,
        "cv_rmse_std": None if served_cv is None else served_cv["cv_rmse"].std,
        "spatial_cv_rmse_mean": None if served_cv is None else served_cv["spatial_cv_rmse"].mean,
        "spatial_cv_rmse_std": None if served_cv is None else served_cv["spatial_cv_rmse"].std,
        "train_seconds": round(fitted.fit_seconds, 3),
    }
    if cv is not None:
        plain = cv[pipeline.PLAIN_LGBM_NAME]
        baseline_metrics[pipeline.PLAIN_LGBM_NAME] |= {
            f"{key}_{stat}": getattr(plain[key], stat)
            for key in ("cv_rmse", "spatial_cv_rmse")
            for stat in ("mean", "std")
        }

    with artifact.staging(out_dir) as stage:
        progress.begin("export and parity check")
        fitted.features.save(stage)
        forest_summary = forest.export_forest(fitted.booster.booster_, stage)
        # LightGBM's own dump, for audits; the serving side never reads it
        (stage / AUDIT_FILE).write_text(fitted.booster.booster_.model_to_string())
        predictor = CompiledModel(stage)
        one_by_one, batch = _served_predictions(predictor, X_test)
        parity = max(evaluate.check_parity(reference, one_by_one), evaluate.check_parity(reference, batch))
        # the drift reference: training rows and what the served model predicts for them
        drift_reference = profile.save_profile(
            stage, profile.build_profile(X_train, predictor.predict_batch(X_train)), len(X_train)
        )
        progress.begin("report and publish")
        written = artifact.publish(
            stage,
            out_dir,
            {
                "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "estimator": SERVED_NAME,
                "model_params": {k: v for k, v in pipeline.LGBM_PARAMS.items() if k != "verbose"},
                "forest": forest_summary,
                "features": list(FEATURE_NAMES),
                "model_features": feature_names(),
                "feature_schema": schema_as_dict(),
                "target": {"name": "MedHouseVal", "unit": "100k USD"},
                "dataset": {
                    "name": "california_housing",
                    "rows": len(dataset.X),
                    "sha256": dataset.sha256,
                    "split": {"test_size": data.TEST_SIZE, "random_state": data.RANDOM_STATE},
                },
                "metrics": metrics,
                "evaluation": _evaluation(X_train, cv, fingerprint),
                "parity_max_abs_diff": parity,
                "reference_profile": drift_reference,
                "baselines": baseline_metrics,
                "quality_gate": {
                    "max_test_rmse": max_test_rmse,
                    **quality.record(baseline_checks, pipeline.PLAIN_LGBM_NAME),
                },
                "versions": library_versions(),
            },
            # into the staged folder, hashed with the model: the whole artifact goes live in one move
            report=lambda named: report.write_report(
                stage / artifact.REPORT_DIR, predictor, parts, named, baselines
            ),
        )
    progress.end()
    # only a run that published: a failed gate leaves no saved figures behind for `make run` to take
    if save_evaluation is not None and cv is not None:
        cache.save(save_evaluation, cache.Fingerprint(fingerprint["sha256"], fingerprint["inputs"]), cv)
    return written


def gate_verdicts(meta: dict[str, Any]) -> list[str]:
    """The quality gate's verdicts with their figures, from the metadata just written."""
    recorded, test_rmse = meta["quality_gate"], meta["metrics"]["test_rmse"]
    return [
        *quality.verdict_lines(recorded),
        f"quality gate: test RMSE {test_rmse:.4f} (last check) within the bound "
        f"{recorded['max_test_rmse']:.4f}: passed",
        f"parity: served predictions within {meta['parity_max_abs_diff']:.3g} of LightGBM's "
        f"(bound {evaluate.PARITY_TOLERANCE:g}): passed",
    ]


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m model.train", description=__doc__)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(os.environ.get("MODEL_DIR", DEFAULT_MODEL_DIR)),
        help="artifact folder (default: $MODEL_DIR or ./artifacts)",
    )
    parser.add_argument(
        "--max-test-rmse",
        type=float,
        default=float(os.environ.get("MAX_TEST_RMSE", evaluate.DEFAULT_MAX_TEST_RMSE)),
        help=f"quality gate: fail when holdout RMSE exceeds this (default: $MAX_TEST_RMSE or "
        f"{evaluate.DEFAULT_MAX_TEST_RMSE})",
    )
    parser.add_argument(
        "--no-cv", action="store_true", help="skip the random-split and spatial CV on the training rows"
    )
    parser.add_argument(
        "--reuse-evaluation",
        type=Path,
        metavar="FILE",
        help="take the CV figures from FILE (saved by --save-evaluation) when its fingerprint is this "
        "run's; otherwise compute them (`make run` passes the one `make report` commits)",
    )
    parser.add_argument(
        "--save-evaluation",
        type=Path,
        metavar="FILE",
        help="save this run's CV figures with their fingerprint to FILE (`make report` does)",
    )
    args = parser.parse_args(argv)
    if args.no_cv and args.save_evaluation is not None:
        parser.error("--save-evaluation needs the CV that --no-cv skips")
    progress = Progress(STAGES)
    progress.start()
    # One thread per process, here as in the workers (model/parallel.py): OpenMP's spinning threads
    # crawl on a shared machine (HistGradientBoosting's predict of the test split: 2.4 s on 2 threads,
    # 0.35 s on 1, at load 6), and predictions do not depend on the thread count.
    limits = threadpool_limits(limits=1)
    try:
        meta = train(
            args.out,
            args.max_test_rmse,
            with_cv=not args.no_cv,
            reuse_evaluation=args.reuse_evaluation,
            save_evaluation=args.save_evaluation,
            progress=progress,
        )
    except (evaluate.QualityGateError, quality.BaselineGateError, evaluate.ParityError) as exc:
        print(f"model.train: {exc}", file=sys.stderr)
        return 1
    except (forest.CompilerMissing, data.DatasetUnavailable, parallel.WorkersError) as exc:
        print(f"model.train: {exc}", file=sys.stderr)
        return 2
    finally:
        limits.restore_original_limits()
        progress.stop()
    m = meta["metrics"]
    cv = (
        ""
        if m["cv_rmse_mean"] is None
        else f", 5-fold CV RMSE {m['cv_rmse_mean']:.4f}, spatial CV RMSE {m['spatial_cv_rmse_mean']:.4f}"
    )
    for line in gate_verdicts(meta):
        print(line)
    print(
        f"model {meta['model_version']}: test RMSE {m['test_rmse']:.4f}, MAE {m['test_mae']:.4f}, "
        f"R² {m['test_r2']:.4f}{cv}; written to {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
