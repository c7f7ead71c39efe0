"""What the drift hook adds to a prediction: `python -m bench.drift_record [--model-dir artifacts]`.

Times, in one process and one run, the served model's predict() on one row and on a 100-row batch
(the baseline), and DriftWindow.record() on the same rows, and writes the figures and the ratio to
bench/drift_record.json. The window is a real file in a temporary folder, as under gunicorn.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from model.profile import load_profile
from model.schema import FEATURE_NAMES, example_record
from service.drift import DriftWindow
from service.predictor import LoadedModel

OUT = Path(__file__).resolve().parent / "drift_record.json"


def per_call_us(call: Callable[[], object], repeat: int) -> float:
    """Median of five timings of `repeat` calls, in microseconds per call."""
    call()
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeat):
            call()
        runs.append((time.perf_counter() - start) / repeat * 1e6)
    return float(np.median(runs))


def main(argv: list[str] | None = None) -> int:
    """Measure and write bench/drift_record.json; returns 0."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.drift_record", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--model-dir", type=Path, default=Path("artifacts"))
    parser.add_argument("--repeat", type=int, default=2000)
    args = parser.parse_args(argv)
    model = LoadedModel.load(args.model_dir)
    window = DriftWindow(load_profile(args.model_dir), 5_000, tempfile.mkdtemp(prefix="cali-bench-"))
    one = np.array([[example_record()[n] for n in FEATURE_NAMES]])
    batch = np.repeat(one, 100, axis=0)
    p_one, p_batch = model.predict(one), model.predict(batch)
    figures = {
        "predict_one_us": per_call_us(lambda: model.predict(one), args.repeat),
        "record_one_us": per_call_us(lambda: window.record(one, p_one), args.repeat),
        "predict_batch100_us": per_call_us(lambda: model.predict(batch), args.repeat // 10),
        "record_batch100_us": per_call_us(lambda: window.record(batch, p_batch), args.repeat // 10),
        "report_us": per_call_us(lambda: window.report("bench"), 50),
    }
    figures["record_over_predict_one"] = round(figures["record_one_us"] / figures["predict_one_us"], 3)
    figures["record_over_predict_batch100"] = round(
        figures["record_batch100_us"] / figures["predict_batch100_us"], 3
    )
    OUT.write_text(json.dumps({k: round(v, 2) for k, v in figures.items()}, indent=2) + "\n")
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
