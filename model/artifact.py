"""The artifact on disk: the served model's files plus metadata.json, written and verified here.

An artifact is a folder: the files the serving side loads (the feature lookup table, the
flattened forest and its compiled evaluator; see model/runtime.py), LightGBM's own text dump for
audits, the model report under report/, and metadata.json. metadata.json records the sha256 of
every one of those files, report included, so a damaged or swapped file is caught before anything
is served. The model's version is a hash of the model files' hashes (not the report's: the report
names the version), so two training runs on the same inputs give the same version;
`artifact_digest` hashes every file's hash, report included, and changes whenever anything served does.

Publishing is one move. Each artifact is written whole (report and metadata.json included) into
its own folder under `.<name>.versions/` beside the published path, and the published path is a
symbolic link swapped with rename(2): a reader sees the old artifact or the new one, never a
missing or half-written one. A reader resolves the link once (`pin`) and reads that folder only,
so a publish while it reads cannot mix two artifacts.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from model.features import FEATURES_META_FILE, TABLE_FILE
from model.profile import PROFILE_FILE
from model.runtime import DEPTHS_FILE, LIBRARY_FILE, NODES_FILE, ROOTS_FILE
from model.schema import schema_fingerprint

METADATA_FILE = "metadata.json"
REPORT_DIR = "report"  # the model report's figures and report.md (model/report.py)
AUDIT_FILE = "lightgbm_model.txt"  # LightGBM's own dump, for audits; the serving side never reads it
# Every file an artifact holds beside metadata.json and report/. publish() refuses a staged folder
# that lacks one or holds a file not listed here, and the server refuses an artifact without one:
# a module that adds a file to the artifact appends its name here.
ARTIFACT_FILES: list[str] = [
    TABLE_FILE,
    FEATURES_META_FILE,
    NODES_FILE,
    ROOTS_FILE,
    DEPTHS_FILE,
    LIBRARY_FILE,
    AUDIT_FILE,
    PROFILE_FILE,
]
ARTIFACT_FORMAT = 2  # 1 was a pickled scikit-learn estimator; 2 is the compiled forest
IDENTITY_KEYS = frozenset(
    {"model_version", "artifact_digest", "files", "schema_fingerprint", "artifact_format"}
)
# Published folders kept: the current one and the two before it, so a server started before the
# last publishes still finds its own files (its report), and `ln -sfn` rolls back by hand.
KEEP_VERSIONS = 3
_STAGING_PREFIX = ".staging-"


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


def _is_report_file(name: str) -> bool:
    return name.startswith(f"{REPORT_DIR}/")


def _staged_files(stage: Path) -> dict[str, Path]:
    """Every file publish() hashes: ARTIFACT_FILES, then report/<name>, by the name metadata records.

    Raises:
        ArtifactError: A listed file is missing, or the folder holds anything else.
    """
    if missing := [name for name in ARTIFACT_FILES if not (stage / name).is_file()]:
        raise ArtifactError(f"the staged artifact lacks {', '.join(missing)}")
    allowed = {*ARTIFACT_FILES, METADATA_FILE, REPORT_DIR}
    if extra := sorted(p.name for p in stage.iterdir() if p.name not in allowed):
        raise ArtifactError(
            f"the staged artifact holds unlisted {', '.join(extra)} (add it to ARTIFACT_FILES)"
        )
    files = {name: stage / name for name in ARTIFACT_FILES}
    report = stage / REPORT_DIR
    if report.is_dir():
        for path in sorted(report.iterdir()):
            if not path.is_file():
                raise ArtifactError(f"the staged report holds {path.name}, which is not a file")
            files[f"{REPORT_DIR}/{path.name}"] = path
    return files


def version_of(files: dict[str, str]) -> str:
    """The model version: a hash of every model file's name and sha256 (report files left out)."""
    return digest_of({name: digest for name, digest in files.items() if not _is_report_file(name)})


def digest_of(files: dict[str, str]) -> str:
    """A short hash of every given file's name and sha256."""
    lines = "".join(f"{name} {digest}\n" for name, digest in sorted(files.items()))
    return hashlib.sha256(lines.encode()).hexdigest()[:12]


def staged_version(stage: Path) -> str:
    """The model_version publish() will give the model files staged in `stage` (for the report)."""
    return version_of({name: _sha256(path) for name, path in _staged_files(stage).items()})


def _versions_dir(out_dir: Path) -> Path:
    return out_dir.with_name(f".{out_dir.name}.versions")


def pin(model_dir: Path) -> Path:
    """The folder `model_dir` names right now, resolved once: read it, not the link.

    A publish swaps the link; a reader holding the pinned folder keeps reading one artifact whole.
    """
    return Path(os.path.realpath(model_dir))


@contextmanager
def staging(out_dir: Path) -> Iterator[Path]:
    """A scratch folder to write a whole artifact into (report too); see publish().

    Removed on the way out unless published, so a failed or gated run leaves out_dir as it was.
    """
    versions = _versions_dir(out_dir)
    versions.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(dir=versions, prefix=_STAGING_PREFIX))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        # nothing ever published here (a first run that failed): leave no trace; a concurrent
        # run's staging folder, or any published one, keeps it
        with contextlib.suppress(OSError):
            versions.rmdir()


def publish(
    stage: Path,
    out_dir: Path,
    metadata: dict[str, Any],
    report: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Hash every staged file, write metadata.json, and make the folder the published one in one move.

    Args:
        stage: A folder from staging() holding ARTIFACT_FILES.
        out_dir: The published path (a symbolic link to the folder); an artifact already there is
            replaced whole. An empty folder there is replaced; a folder of an earlier layout is kept
            among the old versions (the only publish with a moment without an artifact).
        metadata: Everything else to record (metrics, versions, data hash, ...).
        report: Writes the report into stage/report/, given the metadata with the model's version,
            and returns its summary, recorded as metadata["report"]; its files are hashed too.

    Returns:
        The metadata as written, with the identity keys (IDENTITY_KEYS).

    Raises:
        ArtifactError: The staged folder is incomplete or holds unlisted files.
        ValueError: `metadata` sets an identity key.
    """
    if clash := sorted(IDENTITY_KEYS & set(metadata)):
        raise ValueError(f"{', '.join(clash)} come from the artifact's files and cannot be set")
    if report is not None:
        # the report names the version, so the version cannot cover the report (see version_of)
        version = staged_version(stage)
        metadata = {**metadata, "report": report({**metadata, "model_version": version})}
    files = {name: _sha256(path) for name, path in _staged_files(stage).items()}
    written = {
        "model_version": version_of(files),
        "artifact_digest": digest_of(files),
        "artifact_format": ARTIFACT_FORMAT,
        "schema_fingerprint": schema_fingerprint(),
        "files": files,
        **metadata,
    }
    _write_atomically(stage / METADATA_FILE, (json.dumps(written, indent=2) + "\n").encode())
    # mkdtemp made it private; the server may run as another (non-root) user than training
    os.chmod(stage, 0o755)  # noqa: S103
    versions = stage.parent
    # Named by time, then version: sorted names are publish order, and the folder says what it holds.
    folder = versions / f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{written['model_version']}"
    os.rename(stage, folder)
    _point(out_dir, folder)
    _prune(versions, keep=folder)
    return written


def _point(out_dir: Path, folder: Path) -> None:
    """Make out_dir a symbolic link to folder with one rename(2), whatever it was before."""
    link = out_dir.with_name(f".{out_dir.name}.link-{os.getpid()}")
    link.unlink(missing_ok=True)
    # Relative, so the published path and its versions can be moved or copied together.
    os.symlink(os.path.relpath(folder, out_dir.parent), link)
    if out_dir.is_dir() and not out_dir.is_symlink():
        # rename(2) cannot put a link over a folder: an empty one goes, an earlier layout's
        # artifact joins the old versions (the one time a reader may find nothing there).
        if any(out_dir.iterdir()):
            os.rename(out_dir, folder.with_name(f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-earlier-layout"))
        else:
            out_dir.rmdir()
    os.replace(link, out_dir)


def _prune(versions: Path, keep: Path) -> None:
    """Remove published folders beyond the KEEP_VERSIONS newest; never one being staged."""
    published = sorted(p for p in versions.iterdir() if not p.name.startswith("."))
    for old in published[:-KEEP_VERSIONS]:
        if old != keep:
            shutil.rmtree(old, ignore_errors=True)


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
    """Check every file served (model files and report) against the sha256 recorded for it.

    `model_dir` is pinned first (see pin()), so the files checked are one artifact's even if a
    publish swaps the link meanwhile; a caller that goes on to load files should pin it itself and
    pass the pinned folder.

    Returns:
        The metadata.

    Raises:
        ArtifactError: One line saying which file is missing, damaged or unexpected.
    """
    model_dir = pin(model_dir)
    metadata = read_metadata(model_dir)
    files: dict[str, str] = metadata["files"]
    if version_of(files) != metadata.get("model_version") or digest_of(files) != metadata.get(
        "artifact_digest"
    ):
        raise ArtifactError(f"{model_dir / METADATA_FILE} does not match its own model_version; retrain")
    if missing := [name for name in ARTIFACT_FILES if name not in files]:
        raise ArtifactError(f"the artifact in {model_dir} has no {', '.join(missing)}; retrain")
    report = metadata.get("report")
    served = report.get("files", []) if isinstance(report, dict) else []
    if unhashed := [name for name in served if f"{REPORT_DIR}/{name}" not in files]:
        raise ArtifactError(f"the report's {', '.join(map(str, unhashed))} has no recorded sha256; retrain")
    for name, digest in files.items():
        path = model_dir / name
        plain = name.removeprefix(f"{REPORT_DIR}/")
        if Path(plain).name != plain or not path.is_file():
            raise ArtifactError(f"{path} is missing; retrain")
        if _sha256(path) != digest:
            raise ArtifactError(f"{path} does not match its recorded sha256 (corrupt or replaced)")
    return metadata
