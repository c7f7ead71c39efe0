"""The model report page: `GET /report`, and its files served from the artifact's report folder.

Training wrote the figures (model/report.py); the server only reads them. It never imports
matplotlib, and it serves only the files that metadata.json lists, from that one folder.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, render_template, send_from_directory
from werkzeug.exceptions import NotFound

from model.artifact import REPORT_DIR

bp = Blueprint("report", __name__)

# The figures' names never change between models, so the page asks for them with the model's
# version in the query string: a browser may keep them an hour and still never shows old ones.
MAX_AGE_S = 3600
_MIMETYPES = {".png": "image/png", ".md": "text/markdown; charset=utf-8"}


def _report() -> dict[str, Any]:
    """The report's entry in the loaded artifact's metadata.

    Raises:
        NotFound: The model was trained before reports existed, or without one.
    """
    report = current_app.extensions["predictor"].metadata.get("report")
    if not isinstance(report, dict) or not isinstance(report.get("files"), list):
        raise NotFound("this model has no report; retrain it (make train) to write one")
    return report


@bp.get("/report")
def page() -> str:
    """The report: metrics against the baselines, the figures, and the price-band table."""
    predictor = current_app.extensions["predictor"]
    report = _report()
    return render_template("report.html", report=report, model_version=predictor.version)


@bp.get("/report/<name>")
def report_file(name: str) -> Response:
    """One file of the report, if metadata.json lists it (nothing else in the folder, nothing outside).

    Raises:
        NotFound: Any other name.
    """
    suffix = name[name.rfind(".") :] if "." in name else ""
    if name not in _report()["files"] or suffix not in _MIMETYPES:
        raise NotFound(f"the report has no file {name!r}")
    # the folder the model was loaded from, not MODEL_DIR again: a publish since then swapped it
    folder = current_app.extensions["predictor"].folder / REPORT_DIR
    # send_from_directory joins safely too; the allow-list above already rules out any other path.
    response = send_from_directory(folder.resolve(), name, mimetype=_MIMETYPES[suffix], max_age=MAX_AGE_S)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
