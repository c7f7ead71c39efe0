"""The cross-validation figures, reused when nothing that decides them has changed.

Twenty CV fits are most of a training run. Their figures depend only on the training rows, the code
that fits and scores them (model/crossval.py and every model module it imports), the parameters and
the library versions, so a run whose inputs hash to the same **fingerprint** as a saved evaluation
may take that evaluation's figures instead of refitting. `make report` saves the evaluation beside the
committed report (docs/report/evaluation.json); `make run`'s first training reuses it when the
fingerprint matches and recomputes otherwise. `make train`, `make report`, the image build and CI
always recompute.

A hit is checkable: metadata.json's `evaluation.fingerprint` records the sha256, every input it
hashes and where the figures came from, and the saved file carries the same inputs and checksums, so
`python -m model.cache` shows whether the fingerprint still holds, and `python -m model.cache
--recompute` (or a `make train`, which always computes) whether the figures do, fold by fold.
"""

from __future__ import annotations

import ast
import hashlib
import json
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model import evaluate, pipeline

CACHE_FORMAT = 1
PACKAGE_DIR = Path(__file__).resolve().parent
# The evaluation `make report` saves beside the committed report, which `make run` reuses (Makefile).
SHIPPED = PACKAGE_DIR.parent / "docs" / "report" / "evaluation.json"
ROOT_MODULE = "crossval"  # the fingerprint's code: this module and the model modules it imports
# Libraries whose arithmetic the figures depend on (pinned in constraints.txt). Python counts by its
# minor version: the pinned wheels, not the interpreter's patch level, do the arithmetic.
LIBRARIES = ("lightgbm", "scikit-learn", "numpy", "pandas", "joblib")


class CacheError(ValueError):
    """A saved evaluation is unreadable or was altered after it was written."""


@dataclass(frozen=True)
class Fingerprint:
    """The sha256 of everything that decides the CV figures, with the inputs it was computed from."""

    sha256: str
    inputs: dict[str, Any]


def code_files(root: str = ROOT_MODULE) -> list[Path]:
    """The root module's file and every model module it imports, directly or not, sorted.

    Read from the sources' import statements (nothing is imported), so a module added to the
    chain is fingerprinted without anyone listing it.
    """
    seen: set[str] = set()
    pending = [root]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        tree = ast.parse((PACKAGE_DIR / f"{name}.py").read_text(), filename=f"{name}.py")
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "model":
                pending += [
                    alias.name for alias in node.names if (PACKAGE_DIR / f"{alias.name}.py").is_file()
                ]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("model."):
                pending.append(node.module.split(".", 1)[1])
            elif isinstance(node, ast.Import):
                pending += [a.name.split(".", 1)[1] for a in node.names if a.name.startswith("model.")]
    return sorted(PACKAGE_DIR / f"{name}.py" for name in seen)


def library_versions() -> dict[str, str]:
    """The versions the fingerprint covers: LIBRARIES, Python's minor version and the CPU architecture."""
    from importlib.metadata import version

    return {
        **{name: version(name) for name in LIBRARIES},
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "machine": platform.machine(),
    }


def _rows_sha256(X: np.ndarray, y: np.ndarray) -> str:
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(np.asarray(X, dtype=np.float64)).tobytes())
    digest.update(np.ascontiguousarray(np.asarray(y, dtype=np.float64)).tobytes())
    return digest.hexdigest()


def _digest(inputs: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _checksum(sha: str, models: dict[str, Any]) -> str:
    # over the figures too: an edited score is caught, not served as a measured one
    return _digest({"fingerprint": sha, "models": models})


def fingerprint(X_train: np.ndarray, y_train: np.ndarray) -> Fingerprint:
    """Hash the training rows, the CV code, the parameters and the library versions."""
    inputs = {
        "format": CACHE_FORMAT,
        "training_rows": {"count": len(X_train), "sha256": _rows_sha256(X_train, y_train)},
        "code": {
            f"model/{path.name}": hashlib.sha256(path.read_bytes()).hexdigest() for path in code_files()
        },
        # already inside the code's hash; listed so that a reader sees what a mismatch means
        "parameters": {
            "served": {k: v for k, v in pipeline.LGBM_PARAMS.items() if k != "verbose"},
            "plain": {k: v for k, v in pipeline.PLAIN_LGBM_PARAMS.items() if k != "verbose"},
            "folds": evaluate.CV_FOLDS,
            "spatial_cell_degrees": evaluate.SPATIAL_CELL_DEGREES,
        },
        "versions": library_versions(),
    }
    return Fingerprint(_digest(inputs), inputs)


def differences(saved: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    """The inputs that differ between two fingerprints, as dotted paths (`code.model/pipeline.py`)."""
    found = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found += differences(a, b, f"{prefix}{key}.")
        elif a != b:
            found.append(f"{prefix}{key}")
    return found


def save(path: Path, stamp: Fingerprint, cv: dict[str, dict[str, evaluate.CVResult]]) -> None:
    """Write the evaluation's fold scores with the fingerprint of what produced them."""
    models = {name: {key: list(result.folds) for key, result in sets.items()} for name, sets in cv.items()}
    document = {
        "format": CACHE_FORMAT,
        "fingerprint": stamp.sha256,
        "checksum": _checksum(stamp.sha256, models),
        "inputs": stamp.inputs,
        "models": models,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")


def read(path: Path) -> dict[str, Any]:
    """A saved evaluation, checked to be whole and untouched (its inputs and figures match its checksums).

    Raises:
        CacheError: Unreadable, another format, or altered after it was written.
    """
    try:
        document = json.loads(path.read_text())
        inputs, sha = document["inputs"], document["fingerprint"]
        models = document["models"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CacheError(f"{path} is not a saved evaluation ({exc.__class__.__name__}: {exc})") from None
    if document.get("format") != CACHE_FORMAT:
        raise CacheError(f"{path} has format {document.get('format')!r}, this code reads {CACHE_FORMAT}")
    if _digest(inputs) != sha or document.get("checksum") != _checksum(sha, models):
        raise CacheError(f"{path} was altered after it was saved (its checksums do not match)")
    return {"fingerprint": sha, "inputs": inputs, "models": models}


def lookup(path: Path, current: Fingerprint) -> tuple[dict[str, dict[str, evaluate.CVResult]] | None, str]:
    """The saved CV results when their fingerprint is this run's, else None, with the reason in words."""
    if not path.is_file():
        return None, f"no saved evaluation at {path}"
    try:
        document = read(path)
    except CacheError as exc:
        return None, str(exc)
    if document["fingerprint"] != current.sha256:
        changed = ", ".join(differences(document["inputs"], current.inputs)) or "the fingerprint"
        return None, f"{path} was saved for other inputs (changed: {changed})"
    cv = {
        name: {key: evaluate.CVResult(tuple(float(v) for v in folds)) for key, folds in sets.items()}
        for name, sets in document["models"].items()
    }
    return cv, f"fingerprint {current.sha256[:12]} matches {path}"


def verify(path: Path, X_train: np.ndarray, y_train: np.ndarray, workers: int) -> list[str]:
    """Refit every CV fold and compare with the saved scores; returns the mismatches (none: verified).

    The check behind a hit: the saved figures are what this checkout computes, bit for bit.

    Raises:
        CacheError: The file is unreadable or was altered.
    """
    from model.crossval import cross_validate

    saved = read(path)["models"]
    fresh = cross_validate(X_train, y_train, workers=workers)
    found = []
    for name in sorted(set(saved) | set(fresh)):
        for key in sorted(set(saved.get(name, {})) | set(fresh.get(name, {}))):
            was = saved.get(name, {}).get(key)
            now = list(fresh[name][key].folds) if key in fresh.get(name, {}) else None
            if was != now:
                found.append(f"{name} {key}: saved {was}, computed {now}")
    return found


def main(argv: list[str] | None = None) -> int:
    """`python -m model.cache [--recompute] [FILE]`: does FILE (default: SHIPPED) hold for this checkout?

    Without --recompute: whether its fingerprint is this checkout's. With it: also refit all 20 CV
    fits and compare every fold score. Exit 0 when it holds, 1 when not.
    """
    import argparse

    from model import data, parallel

    parser = argparse.ArgumentParser(prog="python -m model.cache", description=main.__doc__)
    parser.add_argument("file", nargs="?", type=Path, default=SHIPPED)
    parser.add_argument("--recompute", action="store_true", help="refit the CV and compare every fold")
    args = parser.parse_args(argv)
    parts = data.split(data.load_dataset())
    X, y = parts.X_train.to_numpy(), parts.y_train.to_numpy()
    cv, reason = lookup(args.file, fingerprint(X, y))
    print(reason)
    if cv is None:
        return 1
    if args.recompute:
        mismatches = verify(args.file, X, y, parallel.worker_count())
        print("\n".join(mismatches) or "every fold score recomputed bit for bit")
        return 1 if mismatches else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
