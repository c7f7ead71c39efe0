"""Letting a gevent worker's other requests run while one request computes for long."""

from __future__ import annotations

import sys

# A greenlet that computes never yields, so every other connection of its worker waits behind it.
# Work is cut in slices of about this many records between yields: one slice of the compiled forest
# (model.runtime) plus its share of validation costs a few milliseconds here (make bench), so a
# request queued behind a batch of 10,000 waits for one slice, not for the whole batch.
SLICE_RECORDS = 1000
_NEXT_LOOP_ITERATION = 1e-6  # seconds: the shortest sleep, i.e. "after one turn of the event loop"


def breathe() -> None:
    """Yield to the worker's other greenlets when running under gevent; a no-op elsewhere."""
    # gunicorn's gevent worker monkey-patches the process before the app loads; under gthread, the
    # tests' client or a plain process, threads (or nothing) share the CPU and there is nothing to do.
    gevent = sys.modules.get("gevent")
    if gevent is not None and "gevent.monkey" in sys.modules and gevent.monkey.is_module_patched("socket"):
        # Not sleep(0): that only runs greenlets already runnable and may resume this one before the
        # loop polls sockets (gevent.hub.sleep's docstring), so a waiting request was never even
        # accepted (measured: /health waited the whole batch). Any positive delay waits for the next
        # loop iteration, which accepts and reads what arrived meanwhile.
        gevent.sleep(_NEXT_LOOP_ITERATION)
