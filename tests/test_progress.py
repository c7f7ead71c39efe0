"""Training's progress lines on stderr (model/progress.py): stages, a bar, a heartbeat, on a test clock."""

from __future__ import annotations

import io
import re

import pytest

from model.progress import Progress, bar

LINE = re.compile(r"^\[ *\d+\.\d s\] ")  # every line starts with the time since the run began


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def run() -> tuple[Progress, io.StringIO, Clock]:
    clock, out = Clock(), io.StringIO()
    return Progress(["load", "fit", "report"], stream=out, clock=clock, heartbeat_s=9.0), out, clock


def test_each_stage_says_its_number_what_comes_next_and_how_long_it_took(run):
    progress, out, clock = run
    progress.begin("load")
    clock.now += 2.5
    progress.begin("fit", "20 fits over 2 workers")
    clock.now += 30
    progress.end()
    assert out.getvalue().splitlines() == [
        "[   0.0 s] 1/3 load (next: fit)",
        "[   2.5 s] 1/3 load done in 2.5 s",
        "[   2.5 s] 2/3 fit: 20 fits over 2 workers (next: report)",
        "[  32.5 s] 2/3 fit done in 30 s",
    ]


def test_a_counted_stage_draws_a_bar_with_the_time_left(run):
    progress, out, clock = run
    progress.begin("fit")
    clock.now += 10
    progress.advance(5, 20, "fits")
    assert out.getvalue().splitlines()[-1] == "[  10.0 s]   [#####...............] 5/20 fits, ~30 s left"
    assert bar(0, 4, width=4) == "[....]"
    assert bar(4, 4, width=4) == "[####]"


def test_the_heartbeat_speaks_only_after_a_silence_and_only_inside_a_stage(run):
    progress, out, clock = run
    clock.now += 60
    assert progress.beat() is False  # no stage open: nothing to report
    progress.begin("fit")
    clock.now += 8.9
    assert progress.beat() is False  # spoke 8.9 s ago
    clock.now += 0.1
    assert progress.beat() is True
    assert out.getvalue().splitlines()[-1] == "[  69.0 s]   fit: working, 9.0 s into the stage"
    assert progress.beat() is False  # the heartbeat itself counts as speaking
    progress.advance(1, 4, "fits")
    clock.now += 9
    assert progress.beat() is True
    assert "1/4 fits, ~54 s left, 18 s into the stage"  # 18 s for 1 of 4 in out.getvalue().splitlines()[-1]


def test_an_unknown_stage_is_refused(run):
    progress, _, _ = run
    with pytest.raises(ValueError, match="unknown stage"):
        progress.begin("deploy")


def test_the_heartbeat_thread_starts_and_stops(run):
    progress, _, _ = run
    progress.start()
    progress.start()  # idempotent
    progress.stop()
    assert progress._thread is None
