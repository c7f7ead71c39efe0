"""Service settings: the one place that reads the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from service.telemetry import DRIFT_MIN_RECORDS
from service.timeouts import APP_KEEPALIVE_S, LOAD_BALANCER_IDLE_TIMEOUT_S

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
WORKER_CLASSES = ("gevent", "gthread")
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


class ConfigError(ValueError):
    """A setting has a value the service cannot run with; the message names the variable."""


def _flag(env: Mapping[str, str], key: str, default: bool) -> bool:
    raw = env.get(key, "").strip().lower()
    if raw == "":
        return default
    if raw not in TRUE + FALSE:
        raise ConfigError(f"{key}={raw!r} is not a switch (allowed: {', '.join(TRUE + FALSE)})")
    return raw in TRUE


def _int(env: Mapping[str, str], key: str, default: int, low: int, high: int) -> int:
    raw = env.get(key)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{key}={raw!r} is not an integer (allowed: {low}..{high})") from None
    if not low <= value <= high:
        raise ConfigError(f"{key}={value} is out of range (allowed: {low}..{high})")
    return value


@dataclass(frozen=True)
class ServiceSettings:
    """Everything the service can be told from outside.

    Attributes:
        model_dir: The artifact folder (metadata.json, the compiled forest, the feature table).
        host: Address gunicorn binds (127.0.0.1 locally; the image sets 0.0.0.0).
        port: Port gunicorn binds.
        workers: gunicorn worker processes; one per core suits CPU-bound inference.
        max_batch: Most records one batch request may carry.
        max_body_bytes: Largest request body accepted (413 beyond).
        log_level: Level of the service's own log lines.
        graceful_timeout: Seconds a SIGTERM leaves in-flight requests to finish.
        worker_class: gunicorn worker class. gevent (the default) holds every connection in a
            greenlet, so slow or idle clients cost nothing while a thread pool would be exhausted by
            a few dozen of them; gthread remains for a deployment behind a buffering proxy.
        threads: Threads per worker, with gthread only.
        worker_connections: Most simultaneous connections one worker holds, with gevent.
        metrics_dir: PROMETHEUS_MULTIPROC_DIR, set by the gunicorn config for multi-worker metrics.
        drift_window: Most recent predicted records the drift window holds (service/drift.py).
        emf: Whether workers print CloudWatch EMF lines (service/telemetry.py). Off unless EMF=1:
            only CloudWatch reads them, so the boot script on AWS sets it (infra/user_data.sh) and a
            local `make run` shows people's logs without a JSON line a minute per worker.
        telemetry_interval: Seconds between a worker's CloudWatch EMF lines when emf is on; 0
            turns them off too.
        keepalive: Seconds an idle keep-alive connection stays open; always longer than the load
            balancer's idle timeout (service/timeouts.py), so the balancer, not the app, closes it.
        revision: GIT_REVISION, the commit the image was built from (the image sets it; for a
            content-named image, the commit that first built that content: infra/release.py).
    """

    model_dir: Path = Path("artifacts")
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 2
    max_batch: int = 10_000
    max_body_bytes: int = 8 * 1024 * 1024
    log_level: str = "INFO"
    graceful_timeout: int = 20
    worker_class: str = "gevent"
    threads: int = 4
    worker_connections: int = 1000
    metrics_dir: str | None = None
    drift_window: int = 5_000
    emf: bool = False
    telemetry_interval: int = 60
    keepalive: int = APP_KEEPALIVE_S
    revision: str = "unknown"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServiceSettings:
        """Read MODEL_DIR, HOST, PORT, WORKERS, WORKER_CLASS, THREADS, WORKER_CONNECTIONS, MAX_BATCH,
        MAX_BODY_BYTES, LOG_LEVEL, GRACEFUL_TIMEOUT, KEEPALIVE, PROMETHEUS_MULTIPROC_DIR, DRIFT_WINDOW,
        EMF, TELEMETRY_INTERVAL and GIT_REVISION.

        Raises:
            ConfigError: A value is malformed or out of range; the message names the variable.
        """
        env = os.environ if env is None else env
        level = env.get("LOG_LEVEL", cls.log_level).strip().upper()
        if level not in LOG_LEVELS:
            raise ConfigError(f"LOG_LEVEL={level!r} is not one of {', '.join(LOG_LEVELS)}")
        worker_class = env.get("WORKER_CLASS", cls.worker_class).strip().lower() or cls.worker_class
        if worker_class not in WORKER_CLASSES:
            raise ConfigError(f"WORKER_CLASS={worker_class!r} is not one of {', '.join(WORKER_CLASSES)}")
        return cls(
            model_dir=Path(env.get("MODEL_DIR") or cls.model_dir),
            host=env.get("HOST") or cls.host,
            port=_int(env, "PORT", cls.port, 1, 65535),
            workers=_int(env, "WORKERS", cls.workers, 1, 64),
            max_batch=_int(env, "MAX_BATCH", cls.max_batch, 1, 1_000_000),
            max_body_bytes=_int(env, "MAX_BODY_BYTES", cls.max_body_bytes, 1024, 1 << 30),
            log_level=level,
            graceful_timeout=_int(env, "GRACEFUL_TIMEOUT", cls.graceful_timeout, 1, 600),
            worker_class=worker_class,
            threads=_int(env, "THREADS", cls.threads, 1, 256),
            worker_connections=_int(env, "WORKER_CONNECTIONS", cls.worker_connections, 10, 100_000),
            metrics_dir=env.get("PROMETHEUS_MULTIPROC_DIR") or None,
            # a window smaller than the PSI's minimum sample could never leave "not enough data"
            drift_window=_int(env, "DRIFT_WINDOW", cls.drift_window, DRIFT_MIN_RECORDS, 1_000_000),
            emf=_flag(env, "EMF", cls.emf),
            telemetry_interval=_int(env, "TELEMETRY_INTERVAL", cls.telemetry_interval, 0, 3600),
            # Below the balancer's idle timeout would bring back its 502s: refused, not clamped.
            keepalive=_int(env, "KEEPALIVE", cls.keepalive, LOAD_BALANCER_IDLE_TIMEOUT_S + 1, 3600),
            revision=env.get("GIT_REVISION", "").strip() or cls.revision,
        )
