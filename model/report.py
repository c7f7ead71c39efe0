"""The model report: the figures and tables a reviewer looks at before trusting a model.

Training calls `write_report` after the artifact is saved. It writes a few PNG figures and a
`report.md` that embeds them beside the metrics tables, into the artifact's `report/` folder, and
returns the summary that metadata.json records (the file list and the numbers the figures show).

Everything is measured on the test split, from the estimators' own predictions, so the figures can
be checked against metadata.json. The code knows nothing about the estimator but `predict`, so a
different model (or different engineered features inside a pipeline) needs no change here.

Figures are deterministic for a given model: fixed sizes, fixed seeds, matplotlib's default style
whatever the local matplotlibrc says, and no date or software version inside the PNG. Each PNG
carries the numbers it plots as JSON in a `cali-report` text chunk, for tests and curious readers.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from model.data import RANDOM_STATE, Split
from model.schema import TARGET_UNIT_USD

if TYPE_CHECKING:  # matplotlib is imported when a report is written, never at import time
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

REPORT_MD = "report.md"
PNG_TEXT_KEY = "cali-report"  # the PNG text chunk holding the figure's numbers as JSON
DPI = 100
N_BANDS = 5  # price bands: quintiles of the actual value
IMPORTANCE_REPEATS = 5  # permutation importance: shuffles per feature (8 features x 5 = 40 predicts)
# The census top-coded block groups at $500,001: the target's ceiling, 5.00001 in $100k.
CAP = 5.0
# A few cities to find one's way on a map drawn without a basemap (no network, no shapefiles).
CITIES = (
    ("San Francisco", 37.77, -122.42),
    ("Sacramento", 38.58, -121.49),
    ("Fresno", 36.74, -119.79),
    ("Los Angeles", 34.05, -118.24),
    ("San Diego", 32.72, -117.16),
)
MODEL_COLOUR = "#0b6bcb"  # the playground's accent
BASELINE_COLOURS = ("#9aa3b2", "#c98a3d", "#6b8e23")
MINUS, EN_DASH = "\u2212", "\u2013"  # typographic signs in figure text


@dataclass(frozen=True)
class FigureSpec:
    """One figure of the report: its file, its words and its size in pixels."""

    file: str
    title: str
    caption: str
    width: int
    height: int

    @property
    def inches(self) -> tuple[float, float]:
        """The matplotlib figure size that gives exactly width x height pixels at DPI."""
        return self.width / DPI, self.height / DPI


FIGURES: tuple[FigureSpec, ...] = (
    FigureSpec(
        "baselines.png",
        "Against the baselines",
        "Test-split errors of the served model and the baselines fitted in the same training run.",
        800,
        420,
    ),
    FigureSpec(
        "predicted_vs_actual.png",
        "Predicted against actual",
        "Each test block group; on the diagonal the prediction is exact. Actual values are capped "
        "at $500k, so the column on the right holds every block group worth that or more.",
        800,
        640,
    ),
    FigureSpec(
        "residual_map.png",
        "Errors on the map",
        "Test block groups at their coordinates, coloured by predicted minus actual value: red is "
        "too high, blue too low. Clusters of one colour are places the model does not know.",
        720,
        760,
    ),
    FigureSpec(
        "permutation_importance.png",
        "Permutation feature importance",
        "How much the test RMSE grows when one feature's values are shuffled among the test rows "
        "(mean and spread over the repeats): what the model leans on.",
        800,
        440,
    ),
    FigureSpec(
        "error_by_price_band.png",
        "Error by price band",
        "RMSE within each quintile of the actual value, for the model and the baselines.",
        800,
        440,
    ),
)
FIGURE_FILES: tuple[str, ...] = tuple(f.file for f in FIGURES)
_SPEC = {f.file: f for f in FIGURES}


def _predict(estimator: Any, X: pd.DataFrame) -> np.ndarray:
    """Predict as the estimator was fitted: a frame if it learnt column names, else an array."""
    given = X if hasattr(estimator, "feature_names_in_") else X.to_numpy()
    return np.asarray(estimator.predict(given), dtype=np.float64)


def _wrap(text: str, width: int) -> str:
    """Break long figure text (model names can be long) into lines that fit the figure."""
    return textwrap.fill(text, width, break_long_words=False)


def _rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.sqrt(np.mean((y_true - y_pred) ** 2)))


def _errors(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    residual = y_pred - y_true
    total = float(np.sum((y_true - y_true.mean()) ** 2))
    return {
        "test_rmse": _rmse(y_true, y_pred),
        "test_mae": float(np.mean(np.abs(residual))),
        "test_r2": 1.0 - float(np.sum(residual**2)) / total,
    }


def _round(value: Any) -> Any:
    """Numbers rounded to 6 decimals all the way down, so JSON and PNG text are stable."""
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_round(v) for v in value]
    return value


def _usd(value: float) -> str:
    """A value in $100k as "$123k" (a negative one with a minus sign)."""
    thousands = round(value * TARGET_UNIT_USD / 1000)
    return f"{MINUS if thousands < 0 else ''}${abs(thousands):,}k"


def price_bands(y_true: np.ndarray, predictions: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
    """RMSE of each model within each quintile of the actual value.

    Args:
        y_true: Actual values of the test split ($100k).
        predictions: Predictions by model name, aligned with y_true.

    Returns:
        One dict per band, cheapest first: band (1-based), low, high, rows, rmse by model name.
    """
    edges = np.quantile(y_true, np.linspace(0.0, 1.0, N_BANDS + 1))
    # interior edges only: a value equal to an edge goes to the band above it, the maximum to the last
    band_of = np.searchsorted(edges[1:-1], y_true, side="right")
    bands = []
    for band in range(N_BANDS):
        rows = band_of == band
        bands.append(
            {
                "band": band + 1,
                "low": float(edges[band]),
                "high": float(edges[band + 1]),
                "rows": int(rows.sum()),
                "rmse": {name: _rmse(y_true[rows], pred[rows]) for name, pred in predictions.items()},
            }
        )
    return bands


def feature_importance(estimator: Any, split: Split) -> dict[str, dict[str, float]]:
    """Permutation importance on the test split: the rise in RMSE when a feature is shuffled.

    Written out rather than scikit-learn's permutation_importance, which insists on a `fit`
    method; this needs only `predict`, so an exported model that cannot be refit works too.

    Returns:
        {feature: {"mean": ..., "std": ...}} in the split's column order, in $100k of RMSE.
    """
    y = split.y_test.to_numpy(dtype=np.float64)
    base = _rmse(y, _predict(estimator, split.X_test))
    rng = np.random.default_rng(RANDOM_STATE)
    importance = {}
    for column in split.X_test.columns:
        rises = []
        for _ in range(IMPORTANCE_REPEATS):
            shuffled = split.X_test.copy()
            shuffled[column] = rng.permutation(shuffled[column].to_numpy())
            rises.append(_rmse(y, _predict(estimator, shuffled)) - base)
        importance[str(column)] = {"mean": float(np.mean(rises)), "std": float(np.std(rises))}
    return importance


def _write_atomically(path: Path, data: bytes) -> None:
    # A running server or a copy by `make report` never sees half a file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)  # public figures: readable by a server running as another user
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _save(fig: Figure, path: Path, numbers: Mapping[str, Any]) -> None:
    """Write the figure as PNG at its exact pixel size, with its numbers and without a date."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)  # headless: the figure renders through Agg, whatever backend is configured
    buffer = io.BytesIO()
    fig.savefig(
        buffer,
        format="png",
        dpi=DPI,
        # Software carries matplotlib's version: None leaves it (and any date) out of the bytes
        metadata={"Software": None, PNG_TEXT_KEY: json.dumps(_round(dict(numbers)), sort_keys=True)},
    )
    _write_atomically(path, buffer.getvalue())


def _new_figure(file: str) -> tuple[Figure, Axes]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=_SPEC[file].inches, dpi=DPI, layout="constrained")
    return fig, fig.add_subplot()


def _dollar_axis(axis: Any) -> None:
    from matplotlib.ticker import FuncFormatter

    axis.set_major_formatter(FuncFormatter(lambda value, _pos: _usd(value)))


def _plot_baselines(model_name: str, scores: Mapping[str, Mapping[str, float]], out: Path) -> dict[str, Any]:
    fig, ax = _new_figure("baselines.png")
    names = list(scores)
    metrics = (("test_rmse", "RMSE"), ("test_mae", "MAE"))
    width = 0.8 / len(names)
    colours = [MODEL_COLOUR, *BASELINE_COLOURS]
    for i, name in enumerate(names):
        xs = [j + (i - (len(names) - 1) / 2) * width for j in range(len(metrics))]
        heights = [scores[name][key] for key, _ in metrics]
        label = f"{name} (R² {scores[name]['test_r2']:.3f})"
        bars = ax.bar(xs, heights, width * 0.95, label=_wrap(label, 48), color=colours[i % len(colours)])
        ax.bar_label(bars, labels=[_usd(h) for h in heights], padding=2, fontsize=9)
    ax.set_xticks(range(len(metrics)), [f"test {label}" for _, label in metrics])
    ax.set_ylabel("error on the test split")
    _dollar_axis(ax.yaxis)
    ax.margins(y=0.15)
    ax.legend(loc="upper right", frameon=False)
    model_rmse = scores[model_name]["test_rmse"]
    gains = [
        f"{1 - model_rmse / scores[b]['test_rmse']:.0%} lower RMSE than {b}" for b in names if b != model_name
    ]
    ax.set_title(_wrap(f"{model_name}: " + "; ".join(gains), 90), fontsize=11)
    _save(fig, out / "baselines.png", {"models": scores})
    return {"models": scores}


def _plot_predicted_vs_actual(y_true: np.ndarray, y_pred: np.ndarray, model_name: str, out: Path) -> None:
    fig, ax = _new_figure("predicted_vs_actual.png")
    ax.scatter(y_true, y_pred, s=4, alpha=0.35, color=MODEL_COLOUR, linewidths=0)
    low = float(min(y_true.min(), y_pred.min(), 0.0))
    high = float(max(y_true.max(), y_pred.max())) + 0.1
    ax.plot([low, high], [low, high], color="#1d2433", linewidth=1, label="identity: predicted = actual")
    capped = int(np.sum(y_true >= CAP))
    cap_label = f"$500k cap ({capped} test rows at it)"
    ax.axvline(CAP, color="#b42318", linestyle="--", linewidth=1, label=cap_label)
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.set_aspect("equal")
    ax.set_xlabel("actual median house value")
    ax.set_ylabel("predicted median house value")
    _dollar_axis(ax.xaxis)
    _dollar_axis(ax.yaxis)
    errors = _errors(y_true, y_pred)
    ax.set_title(
        _wrap(
            f"{model_name} on {len(y_true):,} test block groups: RMSE {_usd(errors['test_rmse'])}, "
            f"R² {errors['test_r2']:.3f}",
            90,
        ),
        fontsize=11,
    )
    ax.legend(loc="upper left", frameon=False)
    _save(fig, out / "predicted_vs_actual.png", {**errors, "rows": len(y_true), "capped_rows": capped})


def _plot_residual_map(X_test: pd.DataFrame, residual: np.ndarray, out: Path) -> dict[str, Any]:
    from matplotlib.colors import Normalize

    fig, ax = _new_figure("residual_map.png")
    lat = X_test["Latitude"].to_numpy()
    lon = X_test["Longitude"].to_numpy()
    # The colour scale stops at the 98th percentile of |error|, so a few wild points do not wash out the rest.
    limit = float(np.quantile(np.abs(residual), 0.98))
    order = np.argsort(np.abs(residual), kind="stable")  # the largest errors are drawn last, on top
    points = ax.scatter(
        lon[order],
        lat[order],
        c=residual[order],
        s=5,
        cmap="RdBu_r",
        norm=Normalize(-limit, limit),
        linewidths=0,
    )
    colourbar = fig.colorbar(points, ax=ax, extend="both", shrink=0.8)
    colourbar.set_label(f"predicted {MINUS} actual")
    _dollar_axis(colourbar.ax.yaxis)
    ax.set_facecolor("#e9ecf1")  # small errors are near-white: a grey ground keeps them visible
    for name, city_lat, city_lon in CITIES:
        ax.plot(city_lon, city_lat, marker="o", markersize=6, markerfacecolor="none", color="#1d2433")
        ax.annotate(name, (city_lon, city_lat), xytext=(5, 3), textcoords="offset points", fontsize=8)
    # Degrees of longitude shrink with latitude; this keeps the state's shape.
    ax.set_aspect(1 / math.cos(math.radians(float(np.mean(lat)))))
    ax.set_xlabel("longitude (°E)")
    ax.set_ylabel("latitude (°N)")
    too_high = float(np.mean(residual > 0))
    ax.set_title(f"Residuals over California ({too_high:.0%} predicted too high)", fontsize=11)
    numbers = {"rows": len(residual), "colour_limit": limit, "share_predicted_too_high": too_high}
    _save(fig, out / "residual_map.png", numbers)
    return numbers


def _plot_importance(importance: Mapping[str, Mapping[str, float]], out: Path) -> None:
    fig, ax = _new_figure("permutation_importance.png")
    ranked = sorted(importance.items(), key=lambda item: item[1]["mean"])  # largest at the top
    names = [name for name, _ in ranked]
    means = [v["mean"] for _, v in ranked]
    stds = [v["std"] for _, v in ranked]
    bars = ax.barh(names, means, xerr=stds, color=MODEL_COLOUR, capsize=3)
    ax.bar_label(bars, labels=[f"+{_usd(m)}" for m in means], padding=6, fontsize=9)
    ax.set_xlabel(f"rise in test RMSE when the feature is shuffled (mean ± sd of {IMPORTANCE_REPEATS})")
    _dollar_axis(ax.xaxis)
    ax.margins(x=0.15)
    ax.set_title("What the model leans on", fontsize=11)
    _save(fig, out / "permutation_importance.png", {"features": dict(importance)})


def _plot_price_bands(bands: list[dict[str, Any]], names: list[str], out: Path) -> None:
    fig, ax = _new_figure("error_by_price_band.png")
    width = 0.8 / len(names)
    colours = [MODEL_COLOUR, *BASELINE_COLOURS]
    for i, name in enumerate(names):
        xs = [b["band"] - 1 + (i - (len(names) - 1) / 2) * width for b in bands]
        heights = [b["rmse"][name] for b in bands]
        bars = ax.bar(xs, heights, width * 0.95, label=_wrap(name, 48), color=colours[i % len(colours)])
        ax.bar_label(bars, labels=[_usd(h) for h in heights], padding=2, fontsize=8)
    ax.set_xticks(
        range(len(bands)), [f"{_usd(b['low'])}{EN_DASH}{_usd(b['high'])}\n{b['rows']:,} rows" for b in bands]
    )
    ax.set_xlabel("actual value, by quintile of the test split")
    ax.set_ylabel("RMSE within the band")
    _dollar_axis(ax.yaxis)
    ax.margins(y=0.12)
    ax.legend(loc="upper left", frameon=False)
    ax.set_title("Where the errors are: RMSE per price band", fontsize=11)
    _save(fig, out / "error_by_price_band.png", {"bands": bands})


def _table(header: list[str], rows: list[list[str]], align: str) -> list[str]:
    """A Markdown table; align holds one 'l' or 'r' per column."""
    rule = ["---" if a == "l" else "---:" for a in align]
    return ["| " + " | ".join(cells) + " |" for cells in (header, rule, *rows)]


CV_HEADING = "## Cross-validation on the training rows"


def _cv_section(evaluation: Mapping[str, Any] | None) -> list[str]:
    """The random-split and spatial CV figures of every model measured, beside the test split's."""
    lines = [CV_HEADING, ""]
    models = (evaluation or {}).get("models")
    if not models:
        return [*lines, "Not run for this model (`python -m model.train --no-cv`).", ""]
    lines += [
        f"Random split: {evaluation['random_cv']}. Spatial: {evaluation['spatial_cv']}. The "
        f"neighbourhood features are {evaluation['neighbourhood_features']}. Mean ± sample standard "
        "deviation (ddof = 1) over the 5 folds; the spatial figure is what a place the data never "
        "covered can expect.",
        "",
        *_table(
            ["model", "random-split CV RMSE", "spatial CV RMSE"],
            [
                [
                    name,
                    f"{m['cv_rmse_mean']:.4f} ± {m['cv_rmse_std']:.4f}",
                    f"{m['spatial_cv_rmse_mean']:.4f} ± {m['spatial_cv_rmse_std']:.4f}",
                ]
                for name, m in models.items()
            ],
            "lrr",
        ),
        "",
    ]
    return lines


def _markdown(
    metadata: Mapping[str, Any],
    model_name: str,
    scores: Mapping[str, Mapping[str, float]],
    bands: list[dict[str, Any]],
    importance: Mapping[str, Mapping[str, float]],
    rows: int,
) -> str:
    version = metadata.get("model_version", "unversioned")

    def md_usd(value: float) -> str:
        # GitHub reads a pair of dollar signs as inline maths; escaped, they stay dollars.
        return _usd(value).replace("$", r"\$")

    names = list(scores)
    figure = {
        spec.file: f"![{spec.title}]({spec.file})\n\n*{spec.caption.replace('$', chr(92) + '$')}*"
        for spec in FIGURES
    }
    lines = [
        f"# Model report: {model_name} `{version}`",
        "",
        f"Measured on the test split ({rows:,} block groups held out from training). Errors are in units "
        r"of \$100k of median house value (dollars in brackets); actual values are capped at \$500k. "
        "Written by `python -m model.train`; `make report` copies it to `docs/report/`.",
        "",
        "## Metrics",
        "",
        *_table(
            ["model", "role", "test RMSE", "test MAE", "test R²"],
            [
                [
                    name,
                    "served" if name == model_name else "baseline",
                    f"{s['test_rmse']:.4f} ({md_usd(s['test_rmse'])})",
                    f"{s['test_mae']:.4f} ({md_usd(s['test_mae'])})",
                    f"{s['test_r2']:.4f}",
                ]
                for name, s in scores.items()
            ],
            "llrrr",
        ),
        "",
        figure["baselines.png"],
        "",
        *_cv_section(metadata.get("evaluation")),
        "## Predictions",
        "",
        figure["predicted_vs_actual.png"],
        "",
        figure["residual_map.png"],
        "",
        "## Error by price band",
        "",
        *_table(
            ["band", "actual value", "rows", *[f"RMSE {n}" for n in names]],
            [
                [
                    str(b["band"]),
                    f"{md_usd(b['low'])}{EN_DASH}{md_usd(b['high'])}",
                    str(b["rows"]),
                    *[f"{b['rmse'][n]:.4f}" for n in names],
                ]
                for b in bands
            ],
            "lrr" + "r" * len(names),
        ),
        "",
        figure["error_by_price_band.png"],
        "",
        "## Feature importance",
        "",
        *_table(
            ["feature", "RMSE rise when shuffled", "sd"],
            [
                [name, f"{v['mean']:.4f}", f"{v['std']:.4f}"]
                for name, v in sorted(importance.items(), key=lambda item: -item[1]["mean"])
            ],
            "lrr",
        ),
        "",
        figure["permutation_importance.png"],
        "",
    ]
    return "\n".join(lines)


def write_report(
    out_dir: Path,
    estimator: Any,
    split: Split,
    metadata: Mapping[str, Any],
    baselines: Mapping[str, Any],
) -> dict[str, Any]:
    """Write the figures and report.md into out_dir, replacing an earlier report there.

    Args:
        out_dir: The report folder (the artifact's `report/`), created when absent.
        estimator: The fitted model; only its `predict` is used.
        split: The train/test split it was evaluated on; the figures use the test part.
        metadata: The artifact's metadata (for the model's name and version).
        baselines: Fitted baseline estimators by name, from the same training run.

    Returns:
        The summary for metadata.json: the folder, its files (report.md first), each figure's
        title, caption and size, and the numbers the figures show.
    """
    import matplotlib
    import matplotlib.style

    out_dir.mkdir(parents=True, exist_ok=True)
    model_name = str(metadata.get("estimator") or type(estimator).__name__)
    y_true = split.y_test.to_numpy(dtype=np.float64)
    predictions = {model_name: _predict(estimator, split.X_test)}
    for name, baseline in baselines.items():
        predictions[name] = _predict(baseline, split.X_test)
    scores = {name: _errors(y_true, pred) for name, pred in predictions.items()}
    bands = price_bands(y_true, predictions)
    importance = feature_importance(estimator, split)

    plots: list[Callable[[], Any]] = [
        lambda: _plot_baselines(model_name, scores, out_dir),
        lambda: _plot_predicted_vs_actual(y_true, predictions[model_name], model_name, out_dir),
        lambda: _plot_residual_map(split.X_test, predictions[model_name] - y_true, out_dir),
        lambda: _plot_importance(importance, out_dir),
        lambda: _plot_price_bands(bands, list(predictions), out_dir),
    ]
    # matplotlib's own defaults, not the machine's matplotlibrc: the same model gives the same bytes.
    # Dollar signs are dollars, not mathtext delimiters.
    style = {"font.size": 9, "text.parse_math": False}
    with matplotlib.style.context("default"), matplotlib.rc_context(style):
        for plot in plots:
            plot()

    markdown = _markdown(metadata, model_name, scores, bands, importance, len(y_true))
    _write_atomically(out_dir / REPORT_MD, markdown.encode())
    files = [REPORT_MD, *FIGURE_FILES]
    for stale in out_dir.iterdir():  # what an earlier report wrote and this one did not
        if stale.is_file() and stale.name not in files:
            stale.unlink()
    return _round(
        {
            "dir": out_dir.name,
            "files": files,
            "model": model_name,
            "test_rows": len(y_true),
            "figures": [
                {"file": s.file, "title": s.title, "caption": s.caption, "width": s.width, "height": s.height}
                for s in FIGURES
            ],
            "models": scores,
            # random-split and spatial CV on the training rows, by model; None when not run
            "cross_validation": (metadata.get("evaluation") or {}).get("models"),
            "price_bands": bands,
            "permutation_importance": {
                "n_repeats": IMPORTANCE_REPEATS,
                "random_state": RANDOM_STATE,
                "features": importance,
            },
        }
    )
