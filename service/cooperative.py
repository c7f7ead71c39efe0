"""Letting a gevent worker's other requests run while one request computes for long."""

from __future__ import annotations

import sys

# A greenlet that computes never yields, so every other connection of its worker waits behind it.
# Work is cut in slices of about this many records between yields: one slice of the compiled forest
# (model.runtime) plus its share of validation costs a few milliseconds here (make bench), so a
# request queued behind a batch of 10,000 waits for one slice, not for the whole batch.
SLICE_RECORDS = 1000


def breathe() -> None:
    """Yield to the worker's other greenlets when running under gevent; a no-op elsewhere."""
    # gunicorn's gevent worker monkey-patches the process before the app loads; under gthread, the
    # tests' client or a plain process, threads (or nothing) share the CPU and there is nothing to do.
    gevent = sys.modules.get("gevent")
    if gevent is not None and "gevent.monkey" in sys.modules and gevent.monkey.is_module_patched("socket"):
        gevent.sleep(0)
