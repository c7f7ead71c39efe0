"""Independent fits spread over the machine's cores with joblib, each held to its share of threads.

Training's cross-validation folds and baseline fits do not depend on one another, and each one is
single-threaded work (LightGBM runs with `n_jobs=1`). They run in joblib's loky worker processes,
`workers` at a time, and every worker may start at most `cores // workers` OpenMP/BLAS threads
(joblib's `inner_max_num_threads` sets OMP_NUM_THREADS and friends in the workers), so workers x
threads never exceeds the cores: HistGradientBoosting, which otherwise starts one OpenMP thread per
core in every process, cannot oversubscribe the machine.

A task's result does not depend on where it ran: the same function on the same rows in another
process gives the same bytes (tests/test_parallel.py compares a parallel run with a serial one).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

WORKERS_ENV = "TRAIN_WORKERS"  # overrides the worker count (1 runs everything in this process)

Task = tuple[Callable[..., Any], tuple[Any, ...]]


class WorkersError(ValueError):
    """TRAIN_WORKERS is not a positive integer."""


def cores() -> int:
    """The cores this process may use (joblib counts CPU affinity and cgroup quotas, as in a container)."""
    from joblib import cpu_count

    return max(1, int(cpu_count()))


def worker_count(env: dict[str, str] | None = None) -> int:
    """How many tasks run at once: TRAIN_WORKERS when set, else one per core.

    Raises:
        WorkersError: TRAIN_WORKERS is set to something other than a positive integer.
    """
    raw = (os.environ if env is None else env).get(WORKERS_ENV, "").strip()
    if not raw:
        return cores()
    if not raw.isdigit() or int(raw) < 1:
        raise WorkersError(f"{WORKERS_ENV}={raw!r} is not a positive integer (1 runs the fits one at a time)")
    return int(raw)


def threads_per_worker(workers: int) -> int:
    """Threads each worker may start, so that workers x threads <= cores."""
    return max(1, cores() // max(1, workers))


def _indexed(index: int, function: Callable[..., Any], args: tuple[Any, ...]) -> tuple[int, Any]:
    return index, function(*args)


def run(tasks: Sequence[Task], workers: int) -> Iterator[tuple[int, Any]]:
    """Start every task and yield (its index, its result) as each one finishes.

    The tasks are dispatched when this is called, so the caller may do other work before reading
    the results. With one worker, or one task, they run in this process, one at a time, as the
    results are read.

    Args:
        tasks: (function, arguments) pairs; functions must be importable module-level names.
        workers: Most tasks running at once.
    """
    from joblib import Parallel, delayed, parallel_config

    workers = max(1, min(workers, len(tasks)))
    with parallel_config(backend="loky", inner_max_num_threads=threads_per_worker(workers)):
        return Parallel(n_jobs=workers, return_as="generator_unordered")(
            delayed(_indexed)(i, function, args) for i, (function, args) in enumerate(tasks)
        )


def run_all(
    tasks: Sequence[Task], workers: int, on_done: Callable[[int, int], None] | None = None
) -> list[Any]:
    """Run every task (see `run`) and return their results in the tasks' order.

    Args:
        tasks: (function, arguments) pairs.
        workers: Most tasks running at once.
        on_done: Called with (tasks finished, tasks in all) after each one, for a progress bar.
    """
    results: list[Any] = [None] * len(tasks)
    for done, (index, result) in enumerate(run(tasks, workers), start=1):
        results[index] = result
        if on_done is not None:
            on_done(done, len(tasks))
    return results
