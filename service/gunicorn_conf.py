"""gunicorn settings for the service, derived from service.config.ServiceSettings.

Used by `make run` and the image: gunicorn -c python:service.gunicorn_conf 'service:create_app()'.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

# One BLAS thread per worker. The served model is walked by C (no OpenMP: LightGBM is not served),
# but numpy still starts a BLAS pool of one thread per core on first use, and two workers on two
# cores oversubscribe: measured with the first model, throughput fell from 850 to 22 requests/s.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from model.artifact import ArtifactError  # noqa: E402
from service.config import ConfigError, ServiceSettings  # noqa: E402
from service.predictor import LoadedModel  # noqa: E402

# This file is gunicorn's entry point: checking here, before the arbiter starts, lets a bad
# setting or a missing/corrupt/foreign artifact end the process with exactly one clear line.
try:
    _settings = ServiceSettings.from_env()
    # verifies every file of the model (hashes, format, schema) and loads it once, then lets it go
    LoadedModel.load(_settings.model_dir)
except (ConfigError, ArtifactError) as _exc:
    sys.exit(f"service: cannot start: {_exc}")

_host = f"[{_settings.host}]" if ":" in _settings.host else _settings.host
bind = f"{_host}:{_settings.port}"
workers = _settings.workers
# gevent by default: every connection is a greenlet, so clients that send their headers byte by
# byte or hold a socket idle cost a little memory, not a worker. With gthread a connection holds one
# of the worker's few threads while its headers arrive (measured here: 50 such clients left a normal
# request unanswered for 8 s; tests/reliability/test_faults.py keeps it under 1 s). Inference is short
# and CPU-bound, so one greenlet at a time per worker loses nothing against a thread pool.
worker_class = _settings.worker_class
threads = _settings.threads  # gthread only
worker_connections = _settings.worker_connections  # gevent only
graceful_timeout = _settings.graceful_timeout
timeout = 30
# Outlasts the load balancer's idle timeout (service/timeouts.py): the balancer closes idle connections first.
keepalive = _settings.keepalive
# gunicorn 27's runtime control socket is not needed and would live in $HOME, which the image's
# non-root user does not have
control_socket_disable = True
accesslog = None  # the app writes one JSON access line per request itself
errorlog = "-"
loglevel = _settings.log_level.lower()
limit_request_line = 4094
limit_request_fields = 50
limit_request_field_size = 8190
# The heartbeat file lives in memory where possible: a container's disk can stall workers.
worker_tmp_dir = "/dev/shm" if Path("/dev/shm").is_dir() else None  # noqa: S108


# The files prometheus_client's multiprocess mode writes (prometheus_client/values.py and
# multiprocess.py: "{type}_{pid}.db", gauges as "gauge_{mode}_{pid}.db"); nothing else is ours to delete.
_SAMPLE_FILE = re.compile(r"(counter|histogram|summary|gauge_[a-z]+)_\d+\.db")
_made_metrics_dir: Path | None = None  # the folder on_starting created, removed again by on_exit


def on_starting(server) -> None:
    """Prepare the folder where every worker writes its metrics."""
    global _made_metrics_dir
    metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if metrics_dir:
        # Samples left by an earlier run would be summed with this one's: delete those, and only
        # those. The variable may name any folder (a volume, a typo, a home directory), so its
        # other contents are left as they are.
        folder = Path(metrics_dir)
        folder.mkdir(parents=True, exist_ok=True)
        for entry in folder.iterdir():
            if _SAMPLE_FILE.fullmatch(entry.name) and entry.is_file():
                entry.unlink(missing_ok=True)
    else:
        _made_metrics_dir = Path(tempfile.mkdtemp(prefix="cali-metrics-"))
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_made_metrics_dir)


def on_exit(server) -> None:
    """Remove the metrics folder on_starting made (never one the environment named)."""
    if _made_metrics_dir is not None:
        shutil.rmtree(_made_metrics_dir, ignore_errors=True)


def child_exit(server, worker) -> None:
    """Drop a dead worker's live samples from the aggregate."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker) -> None:
    """Start this worker's CloudWatch EMF emitter (a greenlet under gevent), now that the app is loaded."""
    from service.monitor import start_telemetry

    start_telemetry(worker.wsgi)


def post_request(worker, req, environ, resp) -> None:
    """Under gevent, yield after each request so keep-alive connections take turns."""
    # A greenlet whose client's next request is already readable never yields, so a few
    # connections were served back to back while the rest waited: measured here at concurrency
    # 16, p50 0.7 ms but p99 56 ms. One yield per request makes it round-robin: p99 13 ms at the
    # same throughput (make bench).
    if _settings.worker_class == "gevent":
        import gevent

        gevent.sleep(0)
