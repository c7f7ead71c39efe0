"""How large PSI is for ordinary traffic, by sample size: `python -m bench.drift_noise [--draws 300]`.

The measurement behind service.telemetry.DRIFT_MIN_RECORDS. The reference is built from the training
split as at `make train` (model.profile.reference_of); each draw takes n test-split rows at random
(traffic from the same population, so any PSI is the sample's noise) and keeps the largest PSI of the
8 features, the figure the drift alarm reads (DriftPSIMax). Prints, per n, the median and 99th
percentile of that largest PSI and how often it reaches the warning and drift thresholds.
"""

from __future__ import annotations

import argparse

import numpy as np

from model import data
from model.profile import bin_index, reference_of
from service.drift import psi
from service.telemetry import PSI_DRIFT, PSI_WARNING

SIZES = (2, 50, 100, 200, 500, 1_000, 5_000)


def main(argv: list[str] | None = None) -> int:
    """Print the table; returns 0."""
    parser = argparse.ArgumentParser(prog="python -m bench.drift_noise", description=__doc__.split("\n\n")[0])
    parser.add_argument("--draws", type=int, default=300, help="samples per size")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    split = data.split(data.load_dataset())
    train, test = split.X_train.to_numpy(), split.X_test.to_numpy()
    references = [reference_of(train[:, j]) for j in range(train.shape[1])]
    rng = np.random.default_rng(args.seed)
    print("| records | median max PSI | p99 max PSI | share >= warning | share >= drift |")
    print("|---:|---:|---:|---:|---:|")
    for n in SIZES:
        largest = np.empty(args.draws)
        for d in range(args.draws):
            rows = test[rng.integers(0, len(test), n)]
            largest[d] = max(
                psi(
                    np.bincount(bin_index(np.asarray(r.edges), rows[:, j]), minlength=len(r.shares)).astype(
                        float
                    ),
                    np.asarray(r.shares),
                )
                for j, r in enumerate(references)
            )
        print(
            f"| {n:,} | {np.median(largest):.3f} | {np.quantile(largest, 0.99):.3f} "
            f"| {np.mean(largest >= PSI_WARNING):.2f} | {np.mean(largest >= PSI_DRIFT):.2f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
