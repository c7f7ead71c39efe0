"""The artifact on disk: the fitted model plus metadata.json, written and read in one place."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import sklearn

from model.schema import schema_fingerprint

MODEL_FILE = "model.joblib"
METADATA_FILE = "metadata.json"
REPORT_DIR = "report"  # the model report's figures and report.md (model/report.py)


class ArtifactError(Exception):
    """The artifact is missing, damaged, or was written for something else."""


@dataclass(frozen=True)
class Artifact:
    """A loaded model with the metadata it was written with."""

    estimator: Any
    metadata: dict[str, Any]

    @property
    def model_version(self) -> str:
        """The content hash that names this model everywhere (responses, logs, image tags)."""
        return str(self.metadata["model_version"])


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_atomically(path: Path, data: bytes) -> None:
    # A reader (a starting server, a second training run) never sees a half-written file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_artifact(out_dir: Path, estimator: Any, metadata: dict[str, Any]) -> dict[str, Any]:
    """Write the model and its metadata; the model's content hash becomes its version.

    Args:
        out_dir: The artifact folder, created when absent.
        estimator: A fitted estimator with a numpy-array `predict`.
        metadata: Everything else to record (metrics, versions, data hash, ...).

    Returns:
        The metadata as written, with model_version, model_sha256 and schema_fingerprint added.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    model_path = out_dir / MODEL_FILE
    with tempfile.NamedTemporaryFile(dir=out_dir, suffix=".joblib", delete=False) as tmp:
        tmp_path = Path(tmp.name)
    try:
        joblib.dump(estimator, tmp_path, compress=3)
        digest = _sha256(tmp_path)
        os.replace(tmp_path, model_path)
    finally:
        tmp_path.unlink(missing_ok=True)
    written = {
        "model_version": digest[:12],
        "model_sha256": digest,
        "schema_fingerprint": schema_fingerprint(),
        **metadata,
    }
    _write_atomically(out_dir / METADATA_FILE, (json.dumps(written, indent=2) + "\n").encode())
    return written


IDENTITY_KEYS = frozenset({"model_version", "model_sha256", "schema_fingerprint"})


def add_to_metadata(out_dir: Path, entries: dict[str, Any]) -> dict[str, Any]:
    """Record more in a saved artifact's metadata.json (e.g. the model report's files).

    The model's identity stays as save_artifact derived it from the model's bytes.

    Returns:
        The metadata as now written.

    Raises:
        ArtifactError: metadata.json is missing or not this project's.
        ValueError: An entry would overwrite the model's identity.
    """
    if clash := sorted(IDENTITY_KEYS & set(entries)):
        raise ValueError(f"{', '.join(clash)} come from the model's bytes and cannot be set afterwards")
    written = {**read_metadata(out_dir), **entries}
    _write_atomically(out_dir / METADATA_FILE, (json.dumps(written, indent=2) + "\n").encode())
    return written


def read_metadata(model_dir: Path) -> dict[str, Any]:
    """Read and sanity-check metadata.json.

    Raises:
        ArtifactError: Missing, unreadable, or for another feature schema.
    """
    path = model_dir / METADATA_FILE
    if not path.is_file():
        raise ArtifactError(f"no trained model in {model_dir} ({METADATA_FILE} missing); run `make train`")
    try:
        metadata = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path} is not valid JSON ({exc.__class__.__name__}); retrain") from exc
    if not isinstance(metadata, dict) or "model_sha256" not in metadata:
        raise ArtifactError(f"{path} is not this project's metadata; retrain")
    if metadata.get("schema_fingerprint") != schema_fingerprint():
        raise ArtifactError(f"the artifact in {model_dir} was trained for another feature schema; retrain")
    return metadata


def load_artifact(model_dir: Path) -> Artifact:
    """Load and verify the artifact: metadata, content hash, library version, model.

    Raises:
        ArtifactError: One line saying what is wrong and what to do.
    """
    metadata = read_metadata(model_dir)
    model_path = model_dir / MODEL_FILE
    if not model_path.is_file():
        raise ArtifactError(f"{model_path} is missing; retrain")
    if _sha256(model_path) != metadata["model_sha256"]:
        raise ArtifactError(f"{model_path} does not match its recorded sha256 (corrupt or replaced)")
    trained_with = metadata.get("versions", {}).get("scikit-learn")
    if trained_with != sklearn.__version__:
        # A pickle from another scikit-learn may load and still predict differently.
        raise ArtifactError(
            f"the model was trained with scikit-learn {trained_with}, "
            f"this environment has {sklearn.__version__}; retrain"
        )
    try:
        estimator = joblib.load(model_path)
    except Exception as exc:  # unpickling fails in many ways; all mean the same here
        raise ArtifactError(f"{model_path} cannot be loaded ({exc.__class__.__name__})") from exc
    return Artifact(estimator=estimator, metadata=metadata)
