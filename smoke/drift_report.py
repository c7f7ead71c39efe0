"""`python -m smoke.drift_report URL [--summary FILE]`: the live service's drift, as a table.

Reads GET /drift, prints a Markdown table (feature, PSI, status) and appends it to --summary (the
weekly workflow passes $GITHUB_STEP_SUMMARY). Exits 1 when any feature drifts, so GitHub notifies the
maintainers; 2 when the service cannot be read. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from service.telemetry import DRIFT

TIMEOUT_S = 20


def fetch_drift(url: str) -> dict[str, Any]:
    """GET <url>/drift as JSON.

    Raises:
        OSError: The service cannot be reached or does not answer 200.
        ValueError: The answer is not the /drift document.
    """
    with urllib.request.urlopen(url.rstrip("/") + "/drift", timeout=TIMEOUT_S) as response:  # noqa: S310
        report = json.load(response)
    if not isinstance(report, dict) or not isinstance(report.get("features"), dict):
        raise ValueError("the answer is not a /drift document")
    return report


def table(report: dict[str, Any]) -> str:
    """The report as Markdown: one row per feature, then the prediction."""
    rows = [*report["features"].items(), ("prediction", report.get("prediction", {}))]
    lines = [
        f"### Drift over the last {report.get('window', 0):,} records (model `{report.get('reference')}`)",
        "",
        "| column | PSI | status |",
        "|---|---:|---|",
    ]
    for name, entry in rows:
        psi = entry.get("psi")
        lines.append(f"| {name} | {'-' if psi is None else f'{psi:.4f}'} | {entry.get('status')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m smoke.drift_report", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("url", help="the service's base URL")
    parser.add_argument("--summary", type=Path, help="append the table to this file")
    args = parser.parse_args(argv)
    try:
        report = fetch_drift(args.url)
    except (OSError, ValueError, urllib.error.URLError) as exc:
        print(f"drift report: cannot read {args.url}/drift: {exc}")
        return 2
    text = table(report)
    print(text, end="")
    if args.summary:
        with args.summary.open("a") as handle:
            handle.write(text)
    drifting = sorted(name for name, entry in report["features"].items() if entry.get("status") == DRIFT)
    if drifting:
        print(f"drift report: drift in {', '.join(drifting)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
