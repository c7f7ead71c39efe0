"""Drift: every predicted record counted into the reference bins, over a window shared by all workers.

The window is one file, memory-mapped by every gunicorn worker (in the metrics folder gunicorn's
on_starting hook prepares, so a restart starts it afresh):

* a header: how many records were ever counted (the ring's write cursor) and the layout;
* a ring of the last `window` records' bin numbers, one byte per column (8 features + the
  prediction), so the window is exactly "the most recent N records", whichever worker served them;
* a ring of the same records' arrival times (float64 Unix seconds), so /drift can say since when
  the window's records came;
* cumulative counts per column and bin, and per-column sums, for /metrics (Prometheus counters
  never go down, so they are not windowed; PromQL's increase() windows them).

A write takes an exclusive flock for a few microseconds; /drift reads the ring under the same lock.
PSI = sum over bins of (recent - reference) * ln(recent / reference), shares floored at PSI_FLOOR;
below DRIFT_MIN_RECORDS records in the window there is no PSI at all ("not enough data").
"""

from __future__ import annotations

import fcntl
import itertools
import math
import mmap
import os
import tempfile
import threading
import time
from bisect import bisect_left
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from model.profile import PREDICTION, QUANTILES, Reference, bin_index
from model.schema import FEATURE_NAMES
from service.telemetry import DRIFT_MIN_RECORDS, PSI_FLOOR, psi_status

COLUMNS: tuple[str, ...] = (*FEATURE_NAMES, PREDICTION)
MAX_BINS = len(QUANTILES) + 1
WINDOW_FILE = "drift-window.bin"
_MAGIC = 0x0C_A1_D1_F7
_HEADER = 4  # int64: magic, records ever counted, window, columns


def psi(recent: np.ndarray, reference: np.ndarray) -> float:
    """Population stability index of recent counts (or shares) against reference shares."""
    actual = np.maximum(recent / recent.sum(), PSI_FLOOR)
    expected = np.maximum(np.asarray(reference, dtype=np.float64), PSI_FLOOR)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


@dataclass(frozen=True)
class WindowState:
    """One read of the window.

    Attributes:
        filled: Records the window holds (at most its capacity).
        counts: Per column (COLUMNS order), the window's records per reference bin.
        oldest: Arrival time (Unix seconds) of the window's oldest record; None when empty.
        newest: Arrival time of its newest record; None when empty.
    """

    filled: int
    counts: list[np.ndarray]
    oldest: float | None
    newest: float | None


def _iso(timestamp: float | None) -> str | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


class DriftWindow:
    """The shared window and cumulative counts; one instance per worker, one file per server."""

    def __init__(self, profile: dict[str, Reference], window: int, folder: str | None) -> None:
        """Map (creating if needed) the window file.

        Args:
            profile: The model's reference (model.profile.load_profile).
            window: Records the window holds (DRIFT_WINDOW).
            folder: The folder every worker shares (PROMETHEUS_MULTIPROC_DIR); None gives this process
                a private one (tests, a single process).
        """
        self.profile = profile
        self.window = window
        self._edges = [np.asarray(profile[c].edges, dtype=np.float64) for c in COLUMNS]
        self._edge_lists = [list(profile[c].edges) for c in COLUMNS]
        self._shares = [np.asarray(profile[c].shares, dtype=np.float64) for c in COLUMNS]
        ncol = len(COLUMNS)
        ring = window * ncol
        ring_padded = -(-ring // 8) * 8  # keep the float64 times and int64 counts that follow 8-byte aligned
        size = 8 * _HEADER + ring_padded + 8 * window + 8 * ncol * MAX_BINS + 8 * ncol
        path = Path(folder or tempfile.mkdtemp(prefix="cali-drift-")) / WINDOW_FILE
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        # flock excludes other processes only: threads share the descriptor (gthread workers)
        self._thread_lock = threading.Lock()
        with self._locked():
            header = os.pread(self._fd, 8 * _HEADER, 0)
            expected = (_MAGIC, window, ncol)
            current = np.frombuffer(header, dtype=np.int64) if len(header) == 8 * _HEADER else None
            if (
                os.fstat(self._fd).st_size != size
                or current is None
                or ((int(current[0]), int(current[2]), int(current[3])) != expected)
            ):
                # a new file, or one written for another window: start an empty one
                os.ftruncate(self._fd, 0)
                os.ftruncate(self._fd, size)
                os.pwrite(self._fd, np.array([_MAGIC, 0, window, ncol], dtype=np.int64).tobytes(), 0)
        self._map = mmap.mmap(self._fd, size)
        self._header = np.frombuffer(self._map, dtype=np.int64, count=_HEADER, offset=0)
        self._ring = np.frombuffer(self._map, dtype=np.uint8, count=ring, offset=8 * _HEADER).reshape(
            window, ncol
        )
        times_offset = 8 * _HEADER + ring_padded
        self._times = np.frombuffer(self._map, dtype=np.float64, count=window, offset=times_offset)
        offset = times_offset + 8 * window
        self._counts = np.frombuffer(self._map, dtype=np.int64, count=ncol * MAX_BINS, offset=offset).reshape(
            ncol, MAX_BINS
        )
        self._sums = np.frombuffer(
            self._map, dtype=np.float64, count=ncol, offset=offset + 8 * ncol * MAX_BINS
        )
        # the same memory as flat memoryviews, for the one-record path
        self._ring_offset = 8 * _HEADER
        whole = memoryview(self._map)
        self._header_mv = whole[: 8 * _HEADER].cast("q")
        self._times_mv = whole[times_offset:offset].cast("d")
        self._counts_mv = whole[offset : offset + 8 * ncol * MAX_BINS].cast("q")
        self._sums_mv = whole[offset + 8 * ncol * MAX_BINS : offset + 8 * ncol * (MAX_BINS + 1)].cast("d")
        self._column_offsets = np.arange(ncol, dtype=np.intp) * MAX_BINS

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with self._thread_lock:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def record(self, X: np.ndarray, predictions: np.ndarray) -> None:
        """Count predicted records into the window: the one call the predict path makes.

        Args:
            X: (n, 8) validated rows in schema order.
            predictions: (n,) what the model answered for them.
        """
        n = len(X)
        if n == 1:
            self._record_one([*X[0].tolist(), float(predictions[0])])
            return
        full = np.column_stack([X, predictions])
        bins = np.empty((n, len(COLUMNS)), dtype=np.uint8)
        for j, edges in enumerate(self._edges):
            bins[:, j] = bin_index(edges, full[:, j])
        # cumulative counts: bincount on bin + column offset gives every column at once
        flat = np.bincount((bins + self._column_offsets).ravel(), minlength=len(COLUMNS) * MAX_BINS)
        sums = full.sum(axis=0)
        kept = bins[-self.window :]
        now = time.time()
        with self._locked():
            start = int(self._header[1])
            positions = (start + n - len(kept) + np.arange(len(kept))) % self.window
            self._ring[positions] = kept
            self._times[positions] = now
            self._header[1] = start + n
            self._counts += flat.reshape(len(COLUMNS), MAX_BINS)
            self._sums += sums

    def _record_one(self, values: list[float]) -> None:
        # The common case (one record per request) without a numpy call: bisect on Python floats and
        # plain writes through memoryviews of the mapped file, a few microseconds in all.
        bins = [bisect_left(e, v) for e, v in zip(self._edge_lists, values, strict=True)]
        ncol = len(COLUMNS)
        counts, sums = self._counts_mv, self._sums_mv
        now = time.time()
        self._thread_lock.acquire()  # not _locked(): a context manager costs more than the write
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            cursor = self._header_mv[1]
            at = self._ring_offset + (cursor % self.window) * ncol
            self._map[at : at + ncol] = bytes(bins)
            self._times_mv[cursor % self.window] = now
            self._header_mv[1] = cursor + 1
            for j, b in enumerate(bins):
                counts[j * MAX_BINS + b] += 1
                sums[j] += values[j]
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            self._thread_lock.release()

    def state(self) -> WindowState:
        """One consistent read of the window: its size, counts per column and bin, and its time span."""
        with self._locked():
            total = int(self._header[1])
            filled = min(total, self.window)
            ring = self._ring[:filled].copy()
            # before the ring wraps the oldest record sits at 0; after, at the write cursor
            first = 0 if total <= self.window else total % self.window
            oldest = float(self._times[first]) if filled else None
            newest = float(self._times[(total - 1) % self.window]) if filled else None
        counts = [
            np.bincount(ring[:, j], minlength=len(self._shares[j]))[: len(self._shares[j])]
            for j in range(len(COLUMNS))
        ]
        return WindowState(filled, counts, oldest, newest)

    def recent_counts(self) -> tuple[int, list[np.ndarray]]:
        """How many records the window holds, and each column's count per bin among them."""
        state = self.state()
        return state.filled, state.counts

    def report(self, reference_version: str, state: WindowState | None = None) -> dict[str, Any]:
        """The /drift document: window size and span, each feature's and the prediction's PSI and status.

        Args:
            reference_version: The served model's version (its profile is the reference).
            state: A read of the window (state()); None reads it now.
        """
        state = state or self.state()
        psis = self.psi_values(state.filled, state.counts)
        entries = {
            c: {"psi": None if p is None else round(p, 6), "status": psi_status(p)} for c, p in psis.items()
        }
        return {
            "window": state.filled,
            "minimum": DRIFT_MIN_RECORDS,
            "since": _iso(state.oldest),
            "until": _iso(state.newest),
            "features": {name: entries[name] for name in FEATURE_NAMES},
            "prediction": entries[PREDICTION],
            "reference": reference_version,
        }

    def psi_values(
        self, filled: int | None = None, counts: list[np.ndarray] | None = None
    ) -> dict[str, float | None]:
        """PSI per column over the window; None for each while it holds fewer than DRIFT_MIN_RECORDS."""
        if filled is None or counts is None:
            filled, counts = self.recent_counts()
        if filled < DRIFT_MIN_RECORDS:
            # The one gate: /drift, the page and the EMF lines (hence the alarm) all read these values.
            return dict.fromkeys(COLUMNS)
        return {c: psi(counts[j], self._shares[j]) for j, c in enumerate(COLUMNS)}

    def bins_document(self, state: WindowState | None = None) -> dict[str, Any]:
        """Reference and recent share per bin for each column (the drift page's picture)."""
        state = state or self.state()
        columns = {}
        for j, column in enumerate(COLUMNS):
            total = state.counts[j].sum()
            columns[column] = {
                "edges": self._edge_lists[j],
                "reference": self._shares[j].tolist(),
                "recent": (state.counts[j] / total).round(6).tolist() if total else None,
            }
        return {"window": state.filled, "columns": columns}

    def totals(self) -> tuple[np.ndarray, np.ndarray]:
        """Cumulative counts per column and bin, and per-column sums, since the server started."""
        with self._locked():
            return self._counts.copy(), self._sums.copy()

    def edges(self, column_index: int) -> list[float]:
        """The bin upper edges of one column."""
        return self._edge_lists[column_index]

    def reference_shares(self, column_index: int) -> np.ndarray:
        """The training share per bin of one column."""
        return self._shares[column_index]


def _rounded(value: float, digits: int) -> str:
    """value to `digits` significant digits in plain notation: 1166 -> "1,170", 2.3456 -> "2.35"."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    decimals = digits - 1 - math.floor(math.log10(abs(value)))
    text = f"{round(value, decimals):,.{max(decimals, 0)}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def edge_texts(edges: list[float]) -> list[str]:
    """The edges rounded for people: the fewest significant digits (3 at least) that keep them distinct."""
    for digits in range(3, 10):
        texts = [_rounded(e, digits) for e in edges]
        if len(set(texts)) == len(texts):
            return texts
    return [f"{e:,}" for e in edges]


def bin_labels(edges: list[float]) -> list[str]:
    """A readable name of every bin: "≤ 2.35", "2.35 to 3.14", ..., "> 7.5".

    A bin holds the values above its lower edge up to and including its upper edge, as Prometheus'
    le buckets do (model.profile.bin_index).
    """
    texts = edge_texts(edges)
    if not texts:
        return ["all values"]
    middle = [f"{low} to {high}" for low, high in itertools.pairwise(texts)]
    return [f"≤ {texts[0]}", *middle, f"> {texts[-1]}"]
