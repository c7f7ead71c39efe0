"""The artifact's contract: published in one move, every served file hashed, a safe forest or none."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from model import artifact, runtime
from model.artifact import METADATA_FILE, REPORT_DIR, ArtifactError, pin, verify_artifact
from model.features import N_FEATURES
from model.runtime import DEPTHS_FILE, NODES_FILE, ROOTS_FILE, CompiledModel, InvalidForest
from service.predictor import LoadedModel


def stage_files(stage: Path, marker: str) -> None:
    """Every listed file (any bytes will do for publishing) and a report, all carrying `marker`."""
    for name in artifact.ARTIFACT_FILES:
        (stage / name).write_text(f"{name} {marker}\n")
    (stage / REPORT_DIR).mkdir()
    (stage / REPORT_DIR / "report.md").write_text(f"# report {marker}\n")


def publish_marked(out: Path, marker: str) -> dict:
    """Publish a small artifact whose every file and metadata say `marker`."""
    with artifact.staging(out) as stage:
        stage_files(stage, marker)
        return artifact.publish(stage, out, {"marker": marker, "report": {"files": ["report.md"]}})


def assert_whole(out: Path, markers: set[str]) -> str:
    """The artifact at `out` verifies and every file is from one publish; returns its marker."""
    folder = pin(out)
    meta = verify_artifact(folder)
    assert meta["marker"] in markers
    for name in artifact.ARTIFACT_FILES:
        assert (folder / name).read_text().split()[-1] == meta["marker"], name
    assert (folder / REPORT_DIR / "report.md").read_text().split()[-1] == meta["marker"]
    return meta["marker"]


def test_a_reader_between_any_two_steps_of_a_publish_sees_one_whole_artifact(tmp_path, monkeypatch):
    out = tmp_path / "artifacts"
    publish_marked(out, "first")
    seen: list[str] = []
    real = {name: getattr(os, name) for name in ("replace", "rename", "rmdir", "unlink")}
    real_rmtree = shutil.rmtree

    def poll() -> None:
        # the old publish moved the live folder aside, then the new one in: here, nothing was there
        seen.append(assert_whole(out, {"first", "second", "third"}))

    def observed(name: str):
        def move(*args, **kwargs):
            poll()
            result = real[name](*args, **kwargs)
            poll()
            return result

        return move

    for name in real:
        monkeypatch.setattr(os, name, observed(name))
    monkeypatch.setattr(shutil, "rmtree", lambda *a, **k: (poll(), real_rmtree(*a, **k), poll()))
    publish_marked(out, "second")
    publish_marked(out, "third")
    monkeypatch.undo()
    assert seen[0] == "first"
    assert seen[-1] == "third"
    assert "second" in seen


def test_a_reader_that_pinned_the_artifact_keeps_reading_it_after_a_publish(tmp_path):
    out = tmp_path / "artifacts"
    first = publish_marked(out, "first")
    pinned = pin(out)
    second = publish_marked(out, "second")
    assert verify_artifact(pinned)["artifact_digest"] == first["artifact_digest"]
    assert verify_artifact(out)["artifact_digest"] == second["artifact_digest"]
    assert first["artifact_digest"] != second["artifact_digest"]


def test_publishing_keeps_the_newest_versions_and_a_relative_link(tmp_path):
    out = tmp_path / "artifacts"
    for n in range(artifact.KEEP_VERSIONS + 2):
        publish_marked(out, f"run{n}")
    kept = sorted(p.name for p in (tmp_path / ".artifacts.versions").iterdir())
    assert len(kept) == artifact.KEEP_VERSIONS
    assert out.is_symlink()
    assert not os.path.isabs(os.readlink(out))
    assert Path(os.readlink(out)).name == kept[-1]
    assert assert_whole(out, {f"run{artifact.KEEP_VERSIONS + 1}"})


def test_an_empty_folder_or_an_earlier_layouts_artifact_is_replaced(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    publish_marked(empty, "new")
    assert empty.is_symlink()
    assert assert_whole(empty, {"new"})
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / METADATA_FILE).write_text("{}")
    publish_marked(legacy, "new")
    assert assert_whole(legacy, {"new"})
    kept = [p for p in (tmp_path / ".legacy.versions").iterdir() if p.name.endswith("earlier-layout")]
    assert [p.name for p in kept[0].iterdir()] == [METADATA_FILE]


@pytest.mark.parametrize(
    ("damage", "message"), [("missing", "lacks forest.so"), ("extra", "unlisted stray.bin")]
)
def test_publish_refuses_an_incomplete_or_unlisted_staged_folder(tmp_path, damage, message):
    out = tmp_path / "artifacts"
    with artifact.staging(out) as stage:
        stage_files(stage, "x")
        if damage == "missing":
            (stage / runtime.LIBRARY_FILE).unlink()
        else:
            (stage / "stray.bin").write_bytes(b"?")
        with pytest.raises(ArtifactError, match=message):
            artifact.publish(stage, out, {})
    assert list(tmp_path.iterdir()) == []  # nothing published, no staging or versions folder left


def test_the_trained_artifact_hashes_its_report_and_names_its_version(trained_model_dir):
    meta = verify_artifact(trained_model_dir)
    report_files = meta["report"]["files"]
    assert report_files
    assert all(f"{REPORT_DIR}/{name}" in meta["files"] for name in report_files)
    report_md = (trained_model_dir / REPORT_DIR / "report.md").read_text()
    assert meta["model_version"] in report_md.splitlines()[0]
    assert meta["model_version"] == artifact.version_of(meta["files"])
    assert meta["artifact_digest"] == artifact.digest_of(meta["files"])


@pytest.fixture
def copied(tmp_path, trained_model_dir) -> Path:
    """A private copy of the trained artifact (a real folder), free to damage."""
    folder = tmp_path / "model"
    shutil.copytree(trained_model_dir, folder)
    return folder


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("tamper", "report/report.md does not match its recorded sha256"),
        ("delete", "report/report.md is missing"),
        ("unlist", "report's report.md has no recorded sha256"),
    ],
)
def test_a_damaged_report_is_refused_at_load(copied, damage, message):
    report_md = copied / REPORT_DIR / "report.md"
    if damage == "tamper":
        report_md.write_text(report_md.read_text().replace("Metrics", "Metr1cs"))
    elif damage == "delete":
        report_md.unlink()
    else:  # drop its hash and forge both digests, as an older publish would have left it
        meta = json.loads((copied / METADATA_FILE).read_text())
        del meta["files"][f"{REPORT_DIR}/report.md"]
        meta["model_version"] = artifact.version_of(meta["files"])
        meta["artifact_digest"] = artifact.digest_of(meta["files"])
        (copied / METADATA_FILE).write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match=message):
        LoadedModel.load(copied)


def rehash(folder: Path) -> None:
    """Record the folder's current bytes in metadata.json, so only the forest checks stand guard."""
    meta = json.loads((folder / METADATA_FILE).read_text())
    meta["files"] = {name: artifact._sha256(folder / name) for name in meta["files"]}
    meta["model_version"] = artifact.version_of(meta["files"])
    meta["artifact_digest"] = artifact.digest_of(meta["files"])
    (folder / METADATA_FILE).write_text(json.dumps(meta))


def corrupt(folder: Path, damage: str) -> None:
    """Hand-corrupt one of the forest's arrays the way a buggy exporter or a bit flip might."""
    nodes = np.load(folder / NODES_FILE)
    roots = np.load(folder / ROOTS_FILE)
    depths = np.load(folder / DEPTHS_FILE)
    split = int(roots[0])  # the first tree's root is a split node
    if damage == "child_out_of_range":
        nodes["left"][split] = len(nodes) + 5
    elif damage == "negative_root":
        roots[3] = -1
    elif damage == "bad_feature":
        nodes["feature"][split] = N_FEATURES
    elif damage == "negative_feature_on_a_leaf":
        leaf = int(np.flatnonzero(nodes["left"] == np.arange(len(nodes)))[0])
        nodes["feature"][leaf] = -1
    elif damage == "nan_direction":
        nodes["nan_right"][split] = 2
    elif damage == "nan_threshold":
        nodes["threshold"][split] = np.nan
    elif damage == "cycle":
        nodes["right"][split] = split
    elif damage == "short_depth":
        depths[0] -= 1
    elif damage == "wrong_root_dtype":
        roots = roots.astype(np.int64)
    elif damage == "float32_thresholds":  # 28-byte records: forest.so would read every node skewed
        narrow = np.dtype(
            [
                (name, "<f4" if name == "threshold" else runtime.NODE_DTYPE[name])
                for name in runtime.NODE_DTYPE.names
            ]
        )
        nodes = nodes.astype(narrow)
    elif damage == "big_endian_depths":
        depths = depths.astype(">i4")
    np.save(folder / NODES_FILE, nodes)
    np.save(folder / ROOTS_FILE, roots)
    np.save(folder / DEPTHS_FILE, depths)
    rehash(folder)


CORRUPTIONS = [
    ("child_out_of_range", "left child .* outside the .* nodes"),
    ("negative_root", "root -1 at index 3 is outside"),
    ("bad_feature", f"reads feature {N_FEATURES}; the model has {N_FEATURES}"),
    ("negative_feature_on_a_leaf", "reads feature -1"),
    ("nan_direction", "nan_right 2; it must be 0 or 1"),
    ("nan_threshold", "threshold nan"),
    ("cycle", "reached twice"),
    ("short_depth", "tree 0 has depth .* recorded but its deepest leaf is at"),
    ("wrong_root_dtype", "forest_roots.npy has dtype int64, forest.so expects int32"),
    ("float32_thresholds", "forest_nodes.npy has dtype .*, forest.so expects"),
    ("big_endian_depths", "forest_depths.npy has dtype >i4"),
]


@pytest.mark.parametrize(("damage", "message"), CORRUPTIONS)
def test_a_forest_that_would_send_the_evaluator_astray_is_refused_by_name(copied, damage, message):
    corrupt(copied, damage)
    verify_artifact(copied)  # the hashes match: only the forest checks stand between it and C
    with pytest.raises(InvalidForest, match=message):
        CompiledModel(copied)
    with pytest.raises(ArtifactError, match=f"unsafe to evaluate: (.* )?{message}"):
        LoadedModel.load(copied)


def test_the_real_forest_passes_every_check(trained_model_dir):
    model = CompiledModel(trained_model_dir)
    runtime.check_forest(model._nodes, model._roots, model._depths, N_FEATURES)
    assert model._nodes.dtype == runtime.NODE_DTYPE
    assert model._nodes.dtype.itemsize == 32
