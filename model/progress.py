"""What a training run is doing, on stderr, for the person waiting for it (standard library only).

A run is a fixed list of stages. Each stage prints a line when it starts (its number, its name, the
time since the run began, and the stage that comes next) and one when it ends (how long it took). A
long stage counts its steps with `advance`, which draws a text bar (`[#####.....] 10/20 fits`) with
an estimate of the time left. A heartbeat thread repeats the current line whenever nothing was
printed for `heartbeat_s` (9 s, looked at once a second), so a quiet fit of a loaded machine never
looks like a hang.

Plain lines, no carriage returns: the same output reads well in a terminal, in `docker build`'s log
and in CI. stdout stays free for the run's one-line result.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import IO

# Repeated after 9 s of silence, checked once a second: a run is never silent for more than 10 s.
HEARTBEAT_S = 9.0
BAR_WIDTH = 20


def bar(done: int, total: int, width: int = BAR_WIDTH) -> str:
    """A text progress bar: `[#####...............]` for done of total."""
    filled = width if total <= 0 else round(width * min(max(done, 0), total) / total)
    return "[" + "#" * filled + "." * (width - filled) + "]"


def _seconds(value: float) -> str:
    return f"{value:.0f} s" if value >= 10 else f"{value:.1f} s"


class Progress:
    """Stage lines, a bar for counted steps and a heartbeat, written to one stream.

    Args:
        stages: The run's stage names, in order (the "next" of each line comes from here).
        stream: Where the lines go; stderr when None.
        clock: Seconds, monotonic; injectable so tests need no real time.
        heartbeat_s: Longest silence before the current line is repeated.
    """

    def __init__(
        self,
        stages: Sequence[str],
        stream: IO[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        heartbeat_s: float = HEARTBEAT_S,
    ) -> None:
        self._stages = list(stages)
        self._stream = stream
        self._clock = clock
        self._heartbeat_s = heartbeat_s
        self._started = clock()
        self._last_line = self._started
        self._current: str | None = None
        self._stage_started = self._started
        self._count: tuple[int, int, str] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _write(self, text: str) -> None:
        # under the lock: the heartbeat thread and the run never interleave half lines
        with self._lock:
            now = self._clock()
            stream = self._stream or sys.stderr
            stream.write(f"[{now - self._started:6.1f} s] {text}\n")
            stream.flush()
            self._last_line = now

    def _next_of(self, name: str) -> str:
        index = self._stages.index(name)
        return self._stages[index + 1] if index + 1 < len(self._stages) else "done"

    def begin(self, name: str, detail: str = "") -> None:
        """Close the current stage, if any, and announce `name`: its number, what it does, what is next.

        Args:
            name: One of the stages given to the constructor.
            detail: A few words on what the stage does this time (e.g. "reused from the cache").

        Raises:
            ValueError: name is not one of the run's stages.
        """
        if name not in self._stages:
            raise ValueError(f"unknown stage {name!r}; the run's stages are {self._stages}")
        self.end()
        self._current, self._stage_started, self._count = name, self._clock(), None
        self._write(
            f"{self._number(name)} {name}{f': {detail}' if detail else ''} (next: {self._next_of(name)})"
        )

    def end(self) -> None:
        """Say how long the current stage took (nothing when no stage is open)."""
        if self._current is None:
            return
        name, self._current = self._current, None
        self._write(f"{self._number(name)} {name} done in {_seconds(self._clock() - self._stage_started)}")

    def _number(self, name: str) -> str:
        return f"{self._stages.index(name) + 1}/{len(self._stages)}"

    def advance(self, done: int, total: int, unit: str) -> None:
        """Draw the bar for a stage's counted steps, with the time left at the pace so far."""
        self._count = (done, total, unit)
        self._write(f"  {self._count_text(self._clock())}")

    def _count_text(self, now: float) -> str:
        if self._count is None:
            return "working"
        done, total, unit = self._count
        elapsed = now - self._stage_started
        left = "" if done <= 0 or done >= total else f", ~{_seconds(elapsed / done * (total - done))} left"
        return f"{bar(done, total)} {done}/{total} {unit}{left}"

    def beat(self) -> bool:
        """Repeat where the run is when nothing was printed for heartbeat_s; returns whether it did."""
        now = self._clock()
        if self._current is None or now - self._last_line < self._heartbeat_s:
            return False
        into = _seconds(now - self._stage_started)
        self._write(f"  {self._current}: {self._count_text(now)}, {into} into the stage")
        return True

    def start(self) -> None:
        """Start the heartbeat thread (idempotent); `stop` ends it."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="progress-heartbeat", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the heartbeat thread and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        # checks once a second, so a silence never lasts much beyond heartbeat_s
        while not self._stop.wait(1.0):
            self.beat()


class Silent(Progress):
    """A Progress that prints nothing (library callers and tests that do not want the lines)."""

    def __init__(self, stages: Sequence[str]) -> None:
        super().__init__(stages)

    def _write(self, text: str) -> None:
        pass

    def start(self) -> None:
        """No heartbeat without output."""
