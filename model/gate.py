"""Promotion gate: may a candidate model replace the one serving? `python -m model.gate`.

    python -m model.gate --candidate artifacts/metadata.json --live https://api.example.com \
        [--first-deploy] [--summary "$GITHUB_STEP_SUMMARY"]

The candidate's metadata.json is compared with the live service's `/metadata` on the figures the
model is for (model/scores.py), all read from the two documents, never re-measured here:

1. random-split CV RMSE and 2. spatial CV RMSE: both models were scored on the same folds of the
   same training rows, so the candidate's loss is the mean of its per-fold differences from the
   live model, and its tolerance is TOLERANCE_STANDARD_ERRORS standard errors of those differences
   (never below MIN_TOLERANCE). A candidate worse on unseen places beyond that is refused whatever
   its test RMSE says;
3. test RMSE, the last check: the test split has no folds, so its tolerance is
   TOLERANCE_STANDARD_ERRORS standard errors of the live model's random-split CV folds (held-out
   sets of the same kind as the test split).

Exit codes, a verdict line and one line per figure on stdout:

* 0: no figure worse than the live model's beyond its tolerance; or, with `--first-deploy`, nothing
  answers at the live URL (said as a note);
* 1: some figure worse beyond its tolerance (the first line names it);
* 2: the two cannot be compared (another dataset, split or CV protocol, a figure either side does not
  record, an answer that is not this project's metadata), or the live service is unreachable and
  `--first-deploy` was not given: the gate fails closed.

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

from model import scores
from model.scores import CV_FIGURES, TEST, Figure

# How many standard errors of the per-fold differences a candidate may lose by: about a one-sided
# 95% bound for five folds (Student's t with 4 degrees of freedom gives 2.13), rounded down.
TOLERANCE_STANDARD_ERRORS = 2.0
# The floor: identical per-fold differences have no spread, and a loss below 0.001 ($100 of median
# value) is below the three decimals every report quotes.
MIN_TOLERANCE = 0.001
TIMEOUT_S = 15
PASS, WORSE, INCOMPARABLE = 0, 1, 2
# What both models must share for fold-by-fold differences to mean anything (metadata.json's `evaluation`).
SAME_FOLDS_KEYS = ("random_cv", "spatial_cv", "training_rows")


class NoLiveService(Exception):
    """Nothing answers at the live URL (refused, unknown host, timeout, or no URL at all)."""


@dataclass(frozen=True)
class Comparison:
    """One figure of both models.

    Attributes:
        figure: Which figure.
        candidate: The candidate's value (the fold mean for a CV figure).
        live: The live model's value.
        candidate_std: The candidate's fold spread (ddof=1); None for the test split.
        live_std: The live model's fold spread; None for the test split.
        worse_by: How much worse the candidate is (positive) or better (negative).
        tolerance: How much worse it may be.
        basis: How the tolerance was derived, in words.
    """

    figure: Figure
    candidate: float
    live: float
    candidate_std: float | None
    live_std: float | None
    worse_by: float
    tolerance: float
    basis: str

    @property
    def refused(self) -> bool:
        """Whether this figure alone refuses the candidate."""
        return self.worse_by > self.tolerance

    def line(self) -> str:
        """The figure's line in the gate's report."""

        def value(mean: float, std: float | None) -> str:
            return f"{mean:.4f}" if std is None else f"{mean:.4f} ± {std:.4f}"

        return (
            f"  {self.figure.label}: candidate {value(self.candidate, self.candidate_std)}, "
            f"live {value(self.live, self.live_std)}; worse by {self.worse_by:+.4f}, tolerance "
            f"{self.tolerance:.4f} ({self.basis}): {'REFUSED' if self.refused else 'ok'}"
        )


@dataclass(frozen=True)
class Verdict:
    """The gate's answer: an exit code, its verdict line, and the comparisons behind it."""

    code: int
    line: str
    comparisons: tuple[Comparison, ...] = ()

    def report(self) -> str:
        """The verdict line and one line per figure, as the gate prints them."""
        return "\n".join([self.line, *(c.line() for c in self.comparisons)]) + "\n"


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


def _identity_mismatch(candidate: dict[str, Any], live: dict[str, Any]) -> str | None:
    """Why the two were not measured on the same rows and folds, or None when they were."""
    cand_data, live_data = candidate.get("dataset") or {}, live.get("dataset") or {}
    if cand_data.get("sha256") != live_data.get("sha256"):
        return f"dataset sha256 {cand_data.get('sha256')} vs live {live_data.get('sha256')}"
    if cand_data.get("split") != live_data.get("split"):
        return f"split {json.dumps(cand_data.get('split'))} vs live {json.dumps(live_data.get('split'))}"
    cand_eval, live_eval = candidate.get("evaluation") or {}, live.get("evaluation") or {}
    for key in SAME_FOLDS_KEYS:
        if cand_eval.get(key) != live_eval.get(key):
            ours, theirs = json.dumps(cand_eval.get(key)), json.dumps(live_eval.get(key))
            return f"evaluation.{key} {ours} vs live {theirs}"
    return None


def _tolerance(standard_error: float) -> float:
    return max(MIN_TOLERANCE, TOLERANCE_STANDARD_ERRORS * standard_error)


def _cv_comparison(candidate: dict[str, Any], live: dict[str, Any], figure: Figure) -> Comparison | str:
    """A CV figure compared fold by fold, or why it cannot be."""
    ours, theirs = scores.fold_scores(candidate, figure), scores.fold_scores(live, figure)
    for side, folds in (("the candidate", ours), ("the live model", theirs)):
        if folds is None:
            return f"{side} records no {figure.label} folds (evaluation.models[estimator].{figure.key}_folds)"
    if ours is None or theirs is None:  # reported above; this says so to the type checker
        raise AssertionError("unreachable")
    try:
        diff = scores.paired_difference(ours, theirs)
    except ValueError as exc:
        return f"{figure.label}: {exc}"
    return Comparison(
        figure,
        ours.mean,
        theirs.mean,
        ours.std,
        theirs.std,
        diff.mean + 0.0,
        _tolerance(diff.standard_error),
        f"{TOLERANCE_STANDARD_ERRORS:g} SE of the {diff.folds} per-fold differences, min {MIN_TOLERANCE:g}",
    )


def _test_comparison(candidate: dict[str, Any], live: dict[str, Any]) -> Comparison | str:
    """The test RMSE, tolerated by the live model's random-split CV standard error."""
    ours, theirs = scores.holdout_rmse(candidate), scores.holdout_rmse(live)
    live_random = scores.fold_scores(live, scores.RANDOM_CV)
    if ours is None or theirs is None or live_random is None:
        return f"{TEST.label}: metrics.{TEST.key} or the live random-split CV folds missing"
    return Comparison(
        TEST,
        ours,
        theirs,
        None,
        None,
        ours - theirs + 0.0,
        _tolerance(live_random.standard_error),
        f"{TOLERANCE_STANDARD_ERRORS:g} SE of the live model's random-split CV folds, min {MIN_TOLERANCE:g}",
    )


def compare(candidate: dict[str, Any], live: dict[str, Any]) -> Verdict:
    """The gate's decision for two metadata documents."""
    mismatch = _identity_mismatch(candidate, live)
    if mismatch:
        return Verdict(INCOMPARABLE, f"gate: not comparable: {mismatch}")
    found = [_cv_comparison(candidate, live, f) for f in CV_FIGURES] + [_test_comparison(candidate, live)]
    missing = [f for f in found if isinstance(f, str)]
    if missing:
        return Verdict(INCOMPARABLE, f"gate: not comparable: {missing[0]}")
    comparisons = tuple(c for c in found if isinstance(c, Comparison))
    versions = f"candidate {candidate.get('model_version')} vs live {live.get('model_version')}"
    refused = [c for c in comparisons if c.refused]
    if refused:
        first = refused[0]
        return Verdict(
            WORSE,
            f"gate: refused: {versions}: {first.figure.label} {first.candidate:.4f} vs {first.live:.4f} "
            f"(worse by {first.worse_by:.4f} > tolerance {first.tolerance:.4f})",
            comparisons,
        )
    return Verdict(PASS, f"gate: passed: {versions}: no figure worse beyond its tolerance", comparisons)


def summary_markdown(verdict: Verdict, candidate: dict[str, Any], live: dict[str, Any] | None) -> str:
    """Both models' figures as a Markdown table, for the job summary."""
    lines = ["### Promotion gate", "", f"`{verdict.line}`", ""]
    if live is None or not verdict.comparisons:
        return "\n".join(lines) + "\n"
    ours, theirs = candidate.get("model_version"), live.get("model_version")
    lines += [
        f"| figure | candidate `{ours}` | live `{theirs}` | worse by | tolerance | verdict |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for c in verdict.comparisons:
        spread = ("", "")
        if c.candidate_std is not None:
            spread = (f" ± {c.candidate_std:.4f}", f" ± {c.live_std:.4f}")
        lines.append(
            f"| {c.figure.label} | {c.candidate:.4f}{spread[0]} | {c.live:.4f}{spread[1]} | "
            f"{c.worse_by:+.4f} | {c.tolerance:.4f} | {'refused' if c.refused else 'ok'} |"
        )
    return "\n".join(lines) + "\n"


def run(candidate_path: Path, live_url: str, *, first_deploy: bool) -> tuple[Verdict, dict, dict | None]:
    """Read the candidate, ask the live service, decide.

    Args:
        candidate_path: The candidate's metadata.json.
        live_url: The live service's base URL.
        first_deploy: The caller knows there is no live stack yet: an unreachable service passes.

    Raises:
        OSError, ValueError: The candidate's metadata.json cannot be read.
    """
    candidate = json.loads(candidate_path.read_text())
    if not isinstance(candidate, dict):
        raise ValueError("not a JSON object")
    try:
        live = fetch_live_metadata(live_url)
    except NoLiveService as exc:
        if first_deploy:
            line = f"gate: passed with a note: first deploy, no live service ({exc})"
            return Verdict(PASS, line), candidate, None
        line = f"gate: live service unreachable ({exc}); only --first-deploy passes without one"
        return Verdict(INCOMPARABLE, line), candidate, None
    except ValueError as exc:
        return Verdict(INCOMPARABLE, f"gate: not comparable: {exc}"), candidate, None
    return compare(candidate, live), candidate, live


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m model.gate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--candidate", type=Path, required=True, help="the candidate's metadata.json")
    parser.add_argument("--live", required=True, help="the live service's base URL")
    parser.add_argument(
        "--first-deploy",
        action="store_true",
        help="there is no live stack yet: an unreachable live service passes, with a note",
    )
    parser.add_argument("--summary", type=Path, help="append a Markdown table of both to this file")
    args = parser.parse_args(argv)
    try:
        verdict, candidate, live = run(args.candidate, args.live, first_deploy=args.first_deploy)
    except (OSError, ValueError) as exc:
        print(f"gate: cannot read the candidate {args.candidate}: {exc}")
        return INCOMPARABLE
    sys.stdout.write(verdict.report())
    if args.summary:
        with args.summary.open("a") as handle:
            handle.write(summary_markdown(verdict, candidate, live))
    return verdict.code


if __name__ == "__main__":
    sys.exit(main())
