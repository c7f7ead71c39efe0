"""The prediction service: a Flask application factory, served by gunicorn."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # importing the package (service.config, service.gunicorn_conf) needs no Flask
    from flask import Flask


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: load the model once, register routes, errors, metrics and logs.

    Args:
        config: Overrides for tests, e.g. {"SETTINGS": ServiceSettings(model_dir=...)}; by default the
            settings come from the environment.

    Raises:
        ArtifactError: The model is missing, corrupt or for another schema (the server must not start).
        ConfigError: A setting is invalid.
    """
    from flask import Flask

    from service import access_log, errors, monitor, report, routes
    from service.config import ServiceSettings
    from service.metrics import Metrics
    from service.openapi import build_openapi
    from service.predictor import LoadedModel

    settings = (config or {}).get("SETTINGS") or ServiceSettings.from_env()
    app = Flask(__name__)
    app.config.update(
        SETTINGS=settings,
        MAX_BATCH=settings.max_batch,
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        JSON_SORT_KEYS=False,
    )
    app.json.sort_keys = False
    if config:
        app.config.update(config)

    access_log.configure_logging(settings.log_level)
    app.extensions["predictor"] = LoadedModel.load(settings.model_dir)
    app.extensions["metrics"] = Metrics(settings.metrics_dir)
    app.extensions["openapi"] = build_openapi(app.config["MAX_BATCH"])

    errors.register_error_handlers(app)
    access_log.install_request_hooks(app)
    app.register_blueprint(routes.bp)
    app.register_blueprint(report.bp)
    monitor.init_app(app)
    return app
