"""Train, evaluate, gate and write the artifact: `python -m model.train`."""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import sklearn

from model import artifact, data, evaluate, pipeline, report
from model.schema import FEATURE_NAMES, schema_as_dict

DEFAULT_MODEL_DIR = "artifacts"


def library_versions() -> dict[str, str]:
    """The versions that decide whether the pickle loads and predicts the same."""
    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "joblib": joblib.__version__,
    }


def train(out_dir: Path, max_test_rmse: float, *, with_cv: bool = True) -> dict[str, Any]:
    """Run the whole training stage and write the artifact.

    Args:
        out_dir: Where the artifact goes.
        max_test_rmse: The quality gate's bound on holdout RMSE ($100k).
        with_cv: Whether to run 5-fold cross-validation (about five more fits).

    Returns:
        The metadata that was written.

    Raises:
        QualityGateError: The model misses the bound; nothing is written.
    """
    dataset = data.load_dataset()
    parts = data.split(dataset)

    started = time.perf_counter()
    model = pipeline.build_model()
    model.fit(parts.X_train.to_numpy(), parts.y_train.to_numpy())
    train_seconds = time.perf_counter() - started

    holdout = evaluate.holdout_metrics(parts.y_test.to_numpy(), model.predict(parts.X_test.to_numpy()))
    evaluate.check_quality_gate(holdout.test_rmse, max_test_rmse)

    metrics: dict[str, float | None] = {
        **holdout.__dict__,
        "cv_rmse_mean": None,
        "cv_rmse_std": None,
        "train_seconds": round(train_seconds, 3),
    }
    if with_cv:
        mean, std = evaluate.cross_validated_rmse(model, dataset.X.to_numpy(), dataset.y.to_numpy())
        metrics["cv_rmse_mean"], metrics["cv_rmse_std"] = mean, std

    baseline = pipeline.build_linear_baseline().fit(parts.X_train, parts.y_train)
    baseline_metrics = evaluate.holdout_metrics(parts.y_test.to_numpy(), baseline.predict(parts.X_test))

    written = artifact.save_artifact(
        out_dir,
        model,
        {
            "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "estimator": type(model).__name__,
            "n_iter": int(getattr(model, "n_iter_", 0)),
            "features": list(FEATURE_NAMES),
            "feature_schema": schema_as_dict(),
            "target": {"name": "MedHouseVal", "unit": "100k USD"},
            "dataset": {
                "name": "california_housing",
                "rows": len(dataset.X),
                "sha256": dataset.sha256,
                "split": {"test_size": data.TEST_SIZE, "random_state": data.RANDOM_STATE},
            },
            "metrics": metrics,
            "baselines": {"LinearRegression": baseline_metrics.__dict__},
            "quality_gate": {"max_test_rmse": max_test_rmse},
            "versions": library_versions(),
        },
    )
    # After the save, so the report can name the model's version; the version (the model's bytes)
    # does not change when metadata.json gains the report's entry.
    summary = report.write_report(
        out_dir / artifact.REPORT_DIR, model, parts, written, {"LinearRegression": baseline}
    )
    return artifact.add_to_metadata(out_dir, {"report": summary})


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
        help="quality gate: fail when holdout RMSE exceeds this (default: $MAX_TEST_RMSE or 0.50)",
    )
    parser.add_argument("--no-cv", action="store_true", help="skip 5-fold cross-validation")
    args = parser.parse_args(argv)
    try:
        meta = train(args.out, args.max_test_rmse, with_cv=not args.no_cv)
    except evaluate.QualityGateError as exc:
        print(f"model.train: {exc}", file=sys.stderr)
        return 1
    m = meta["metrics"]
    cv = "" if m["cv_rmse_mean"] is None else f", 5-fold CV RMSE {m['cv_rmse_mean']:.4f}"
    print(
        f"model {meta['model_version']}: test RMSE {m['test_rmse']:.4f}, MAE {m['test_mae']:.4f}, "
        f"R² {m['test_r2']:.4f}{cv}; written to {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
