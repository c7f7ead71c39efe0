"""Promotion gate: may a candidate model replace the one serving? `python -m model.gate`.

    python -m model.gate --candidate artifacts/metadata.json --live https://api.example.com \
        [--tolerance 0.005] [--summary "$GITHUB_STEP_SUMMARY"]

The candidate's holdout metrics are compared with the live service's `/metadata`, metric by metric,
for every metric both record whose name ends in rmse, mae, mse, mape or r2 (the names come from the
metadata, so a change to the evaluation's keys needs no change here).
Exit codes, each with one line on stdout:

* 0: the candidate is no worse than the live model beyond the tolerance, or there is no live
  service yet (a first deploy), said as a note;
* 1: the candidate is worse than the live model by more than the tolerance on some metric;
* 2: the two cannot be compared: another dataset (sha256) or split, no metric in common, or the
  live service answers something that is not this project's metadata.

Standard library only (CI runs it before installing anything heavy).
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_TOLERANCE = 0.005
TIMEOUT_S = 15
# Which way is better, by the metric name's ending: errors fall, explained variance rises.
LOWER_IS_BETTER = ("rmse", "mae", "mse", "mape")
HIGHER_IS_BETTER = ("r2",)
PASS, WORSE, INCOMPARABLE = 0, 1, 2


class NoLiveService(Exception):
    """Nothing answers at the live URL: there is no model to defend (a first deploy)."""


@dataclass(frozen=True)
class Comparison:
    """One metric of both models.

    Attributes:
        name: The metric's key in metadata.json's "metrics".
        candidate: The candidate's value.
        live: The live model's value.
        worse_by: How much worse the candidate is (positive) or better (negative).
    """

    name: str
    candidate: float
    live: float
    worse_by: float


@dataclass(frozen=True)
class Verdict:
    """The gate's answer: an exit code, its one line, and the comparisons behind it."""

    code: int
    line: str
    comparisons: tuple[Comparison, ...] = ()


def direction(name: str) -> int | None:
    """+1 when lower is better, -1 when higher is better, None for a metric with no direction."""
    last = name.lower().rsplit("_", 1)[-1]
    if last in LOWER_IS_BETTER:
        return 1
    if last in HIGHER_IS_BETTER:
        return -1
    return None


def holdout_metrics(metadata: dict[str, Any]) -> dict[str, float]:
    """The metrics in metadata.json's "metrics" whose name says which way is better.

    Any name ending in a known error or score (test_rmse, test_mae, test_r2, holdout_rmse, ...) is
    compared; the others (cv_rmse_mean, train_seconds) say nothing about the holdout.
    """
    metrics = metadata.get("metrics")
    if not isinstance(metrics, dict):
        return {}
    return {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and direction(k) is not None
    }


def fetch_live_metadata(url: str, timeout_s: float = TIMEOUT_S) -> dict[str, Any]:
    """GET <url>/metadata.

    Raises:
        NoLiveService: Nothing listens there (refused, unknown host, timeout) or the URL is empty.
        ValueError: Something answers, but not with this project's metadata.
    """
    if not url.strip():
        raise NoLiveService("no live URL given")
    target = url.rstrip("/") + "/metadata"
    try:
        with urllib.request.urlopen(target, timeout=timeout_s) as response:  # noqa: S310 - http(s) only
            body = response.read()
    except urllib.error.HTTPError as exc:
        raise ValueError(f"{target} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise NoLiveService(f"{target}: {getattr(exc, 'reason', exc)}") from None
    try:
        metadata = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError(f"{target} did not answer JSON") from None
    if not isinstance(metadata, dict) or "model_version" not in metadata:
        raise ValueError(f"{target} is not this project's /metadata")
    return metadata


def _identity(metadata: dict[str, Any]) -> tuple[Any, Any]:
    dataset = metadata.get("dataset") or {}
    return dataset.get("sha256"), dataset.get("split")


def compare(candidate: dict[str, Any], live: dict[str, Any], tolerance: float) -> Verdict:
    """The gate's decision for two metadata documents."""
    cand_id, live_id = _identity(candidate), _identity(live)
    if cand_id[0] != live_id[0]:
        return Verdict(
            INCOMPARABLE, f"gate: not comparable: dataset sha256 {cand_id[0]} vs live {live_id[0]}"
        )
    if cand_id[1] != live_id[1]:
        return Verdict(
            INCOMPARABLE,
            f"gate: not comparable: split {json.dumps(cand_id[1])} vs live {json.dumps(live_id[1])}",
        )
    ours, theirs = holdout_metrics(candidate), holdout_metrics(live)
    common = sorted(set(ours) & set(theirs))
    if not common:
        return Verdict(INCOMPARABLE, "gate: not comparable: no holdout metric recorded by both models")
    comparisons = tuple(
        Comparison(name, ours[name], theirs[name], (ours[name] - theirs[name]) * direction(name) + 0.0)
        for name in common
    )
    worst = max(comparisons, key=lambda c: c.worse_by)
    versions = f"candidate {candidate.get('model_version')} vs live {live.get('model_version')}"
    if worst.worse_by > tolerance:
        return Verdict(
            WORSE,
            f"gate: refused: {versions}: {worst.name} {worst.candidate:.4f} vs {worst.live:.4f} "
            f"(worse by {worst.worse_by:.4f} > tolerance {tolerance})",
            comparisons,
        )
    return Verdict(PASS, f"gate: passed: {versions}: no metric worse by more than {tolerance}", comparisons)


def summary_markdown(verdict: Verdict, candidate: dict[str, Any], live: dict[str, Any] | None) -> str:
    """Both models' metrics as a Markdown table, for the job summary."""
    lines = ["### Promotion gate", "", f"`{verdict.line}`", ""]
    if live is None:
        return "\n".join(lines) + "\n"
    ours, theirs = candidate.get("model_version"), live.get("model_version")
    lines += [f"| metric | candidate `{ours}` | live `{theirs}` | worse by |", "|---|---:|---:|---:|"]
    lines += [
        f"| {c.name} | {c.candidate:.4f} | {c.live:.4f} | {c.worse_by:+.4f} |" for c in verdict.comparisons
    ]
    return "\n".join(lines) + "\n"


def run(candidate_path: Path, live_url: str, tolerance: float) -> tuple[Verdict, dict[str, Any], dict | None]:
    """Read the candidate, ask the live service, decide.

    Raises:
        OSError, ValueError: The candidate's metadata.json cannot be read.
    """
    candidate = json.loads(candidate_path.read_text())
    try:
        live = fetch_live_metadata(live_url)
    except NoLiveService as exc:
        return (
            Verdict(PASS, f"gate: passed with a note: no live service to compare with ({exc}); first deploy"),
            candidate,
            None,
        )
    except ValueError as exc:
        return Verdict(INCOMPARABLE, f"gate: not comparable: {exc}"), candidate, None
    return compare(candidate, live, tolerance), candidate, live


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m model.gate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--candidate", type=Path, required=True, help="the candidate's metadata.json")
    parser.add_argument("--live", required=True, help="the live service's base URL (empty: first deploy)")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE, help="allowed loss per metric")
    parser.add_argument("--summary", type=Path, help="append a Markdown table of both to this file")
    args = parser.parse_args(argv)
    if args.tolerance < 0:
        parser.error("--tolerance must be >= 0")
    try:
        verdict, candidate, live = run(args.candidate, args.live, args.tolerance)
    except (OSError, ValueError) as exc:
        print(f"gate: cannot read the candidate {args.candidate}: {exc}")
        return INCOMPARABLE
    print(verdict.line)
    if args.summary:
        with args.summary.open("a") as handle:
            handle.write(summary_markdown(verdict, candidate, live))
    return verdict.code


if __name__ == "__main__":
    sys.exit(main())
