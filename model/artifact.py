"""The artifact on disk: the served model's files plus metadata.json, written and verified here.

An artifact is a folder: the files the serving side loads (the feature lookup table, the
flattened forest and its compiled evaluator; see model/runtime.py), LightGBM's own text dump for
audits, metadata.json, and the model report under report/. metadata.json records the sha256 of
every model file; the model's version is a hash of those hashes, so two training runs on the same
inputs give the same version, and a damaged or swapped file is caught before anything is served.

Standard library only: the serving image imports this module without any training library.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from model.schema import schema_fingerprint

METADATA_FILE = "metadata.json"
REPORT_DIR = "report"  # the model report's figures and report.md (model/report.py)
ARTIFACT_FORMAT = 2  # 1 was a pickled scikit-learn estimator; 2 is the compiled forest
IDENTITY_KEYS = frozenset({"model_version", "files", "schema_fingerprint", "artifact_format"})


class ArtifactError(Exception):
    """The artifact is missing, damaged, or was written for something else."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_atomically(path: Path, data: bytes) -> None:
    # A reader (a starting server, a second training run) never sees a half-written file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _model_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name != METADATA_FILE)


def version_of(files: dict[str, str]) -> str:
    """The model version: a hash of every model file's name and sha256."""
    lines = "".join(f"{name} {digest}\n" for name, digest in sorted(files.items()))
    return hashlib.sha256(lines.encode()).hexdigest()[:12]


@contextmanager
def staging(out_dir: Path) -> Iterator[Path]:
    """A scratch folder beside out_dir to write an artifact into; see publish().

    Removed on the way out, so a failed or gated run leaves out_dir as it was.
    """
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.staging-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def publish(stage: Path, out_dir: Path, metadata: dict[str, Any]) -> dict[str, Any]:
    """Hash the staged model files, write metadata.json, and move the folder into place.

    Args:
        stage: A folder from staging() holding the model files (and report/, if any).
        out_dir: Where the artifact goes; an artifact already there is replaced whole.
        metadata: Everything else to record (metrics, versions, data hash, ...).

    Returns:
        The metadata as written, with model_version, files, schema_fingerprint, artifact_format.
    """
    files = {p.name: _sha256(p) for p in _model_files(stage)}
    written = {
        "model_version": version_of(files),
        "artifact_format": ARTIFACT_FORMAT,
        "schema_fingerprint": schema_fingerprint(),
        "files": files,
        **metadata,
    }
    _write_atomically(stage / METADATA_FILE, (json.dumps(written, indent=2) + "\n").encode())
    # mkdtemp made it private; the server may run as another (non-root) user than training
    os.chmod(stage, 0o755)  # noqa: S103
    old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
    if out_dir.exists():
        os.replace(out_dir, old)
    os.replace(stage, out_dir)
    shutil.rmtree(old, ignore_errors=True)
    return written


def add_to_metadata(out_dir: Path, entries: dict[str, Any]) -> dict[str, Any]:
    """Record more in a saved artifact's metadata.json (e.g. the model report's files).

    The model's identity stays as publish() derived it from the model's files.

    Returns:
        The metadata as now written.

    Raises:
        ArtifactError: metadata.json is missing or not this project's.
        ValueError: An entry would overwrite the model's identity.
    """
    if clash := sorted(IDENTITY_KEYS & set(entries)):
        raise ValueError(f"{', '.join(clash)} come from the model's files and cannot be set afterwards")
    written = {**read_metadata(out_dir), **entries}
    _write_atomically(out_dir / METADATA_FILE, (json.dumps(written, indent=2) + "\n").encode())
    return written


def read_metadata(model_dir: Path) -> dict[str, Any]:
    """Read and sanity-check metadata.json.

    Raises:
        ArtifactError: Missing, unreadable, of another format, or for another feature schema.
    """
    path = model_dir / METADATA_FILE
    if not path.is_file():
        raise ArtifactError(f"no trained model in {model_dir} ({METADATA_FILE} missing); run `make train`")
    try:
        metadata = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path} is not valid JSON ({exc.__class__.__name__}); retrain") from exc
    if not isinstance(metadata, dict) or not isinstance(metadata.get("files"), dict):
        raise ArtifactError(f"{path} is not this project's metadata; retrain")
    if metadata.get("artifact_format") != ARTIFACT_FORMAT:
        raise ArtifactError(
            f"the artifact in {model_dir} has format {metadata.get('artifact_format')}, "
            f"this service reads format {ARTIFACT_FORMAT}; retrain"
        )
    if metadata.get("schema_fingerprint") != schema_fingerprint():
        raise ArtifactError(f"the artifact in {model_dir} was trained for another feature schema; retrain")
    return metadata


def verify_artifact(model_dir: Path) -> dict[str, Any]:
    """Check every model file against the sha256 recorded for it.

    Returns:
        The metadata.

    Raises:
        ArtifactError: One line saying which file is missing, damaged or unexpected.
    """
    metadata = read_metadata(model_dir)
    files: dict[str, str] = metadata["files"]
    if version_of(files) != metadata.get("model_version"):
        raise ArtifactError(f"{model_dir / METADATA_FILE} does not match its own model_version; retrain")
    for name, digest in files.items():
        path = model_dir / name
        if Path(name).name != name or not path.is_file():
            raise ArtifactError(f"{path} is missing; retrain")
        if _sha256(path) != digest:
            raise ArtifactError(f"{path} does not match its recorded sha256 (corrupt or replaced)")
    return metadata
