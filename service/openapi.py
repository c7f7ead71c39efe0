"""The OpenAPI 3 document, built from the feature schema so the two cannot drift apart."""

from __future__ import annotations

from typing import Any

from model.schema import FEATURE_NAMES, FEATURES, example_record
from service.telemetry import DRIFT_MIN_RECORDS, NOT_ENOUGH_DATA, STATUSES


def _error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _json(ref: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}},
    }


def build_openapi(max_batch: int) -> dict[str, Any]:
    """Describe every route, the request shapes and the error shape.

    Args:
        max_batch: The batch limit this server enforces (shown as maxItems).
    """
    record = {
        "type": "object",
        "additionalProperties": False,
        "required": [f.name for f in FEATURES],
        "properties": {
            f.name: {
                "type": "number",
                "minimum": f.minimum,
                "maximum": f.maximum,
                "description": f"{f.description} ({f.unit})",
                "example": f.example,
            }
            for f in FEATURES
        },
    }
    errors = {
        "400": _error_response("Malformed JSON, or missing, unknown, non-numeric or non-finite fields"),
        "413": _error_response("Batch or body too large"),
        "415": _error_response("Content type is not application/json"),
        "422": _error_response("A value outside its feature's valid range"),
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "California Housing price API",
            "version": "1.0.0",
            "description": "Predicts a block group's median house value. Errors share one JSON shape.",
        },
        "paths": {
            "/predict": {
                "post": {
                    "summary": "Predict one record or a batch",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "oneOf": [
                                        {"$ref": "#/components/schemas/Record"},
                                        {"$ref": "#/components/schemas/Batch"},
                                    ]
                                },
                                "example": example_record(),
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "Prediction(s) in $100k and in dollars",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "oneOf": [
                                            {"$ref": "#/components/schemas/Prediction"},
                                            {"$ref": "#/components/schemas/BatchPrediction"},
                                        ]
                                    }
                                }
                            },
                        },
                        **errors,
                    },
                }
            },
            "/health": {"get": {"summary": "Liveness", "responses": {"200": _json("Status", "Alive")}}},
            "/ready": {
                "get": {
                    "summary": "Readiness: model loaded and self-test passes",
                    "responses": {
                        "200": _json("Ready", "Ready to predict"),
                        "503": _error_response("Model not available"),
                    },
                }
            },
            "/metadata": {
                "get": {
                    "summary": "The model artifact's metadata",
                    "responses": {
                        "200": {"description": "metadata.json", "content": {"application/json": {}}}
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {"200": {"description": "Text format", "content": {"text/plain": {}}}},
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {"200": {"description": "OpenAPI 3", "content": {"application/json": {}}}},
                }
            },
            "/": {
                "get": {
                    "summary": "The playground page",
                    "responses": {"200": {"description": "HTML", "content": {"text/html": {}}}},
                }
            },
            "/report": {
                "get": {
                    "summary": "The model report page: metrics against the baselines, figures, price bands",
                    "responses": {
                        "200": {"description": "HTML", "content": {"text/html": {}}},
                        "404": _error_response("The model was trained without a report"),
                    },
                }
            },
            "/drift": {
                "get": {
                    "summary": "PSI of each feature and of the prediction over the last DRIFT_WINDOW records",
                    "responses": {
                        "200": _json("Drift", "The window's size, PSI and status per column"),
                        "404": _error_response("The model was trained without a reference profile"),
                    },
                }
            },
            "/drift/bins": {
                "get": {
                    "summary": "Reference and recent share per bin for every column (the drift page's data)",
                    "responses": {
                        "200": {"description": "Shares per bin", "content": {"application/json": {}}},
                        "404": _error_response("The model was trained without a reference profile"),
                    },
                }
            },
            "/drift/page": {
                "get": {
                    "summary": "The drift page: reference against recent share per bin, per feature",
                    "responses": {
                        "200": {"description": "HTML", "content": {"text/html": {}}},
                        "404": _error_response("The model was trained without a reference profile"),
                    },
                }
            },
            "/report/{name}": {
                "get": {
                    "summary": "One file of the model report, as listed under report.files in /metadata",
                    "parameters": [
                        {
                            "name": "name",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                            "example": "predicted_vs_actual.png",
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "A figure or report.md",
                            "content": {"image/png": {}, "text/markdown": {}},
                        },
                        "404": _error_response("Not a file of this model's report"),
                    },
                }
            },
        },
        "components": {
            "schemas": {
                "Record": record,
                "Batch": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["instances"],
                    "properties": {
                        "instances": {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": max_batch,
                            "items": {"$ref": "#/components/schemas/Record"},
                        }
                    },
                },
                "Prediction": {
                    "type": "object",
                    "required": ["prediction", "price_usd", "model_version"],
                    "properties": {
                        "prediction": {"type": "number", "description": "median house value in $100k"},
                        "price_usd": {"type": "number"},
                        "model_version": {"type": "string"},
                    },
                },
                "BatchPrediction": {
                    "type": "object",
                    "required": ["predictions", "prices_usd", "model_version"],
                    "properties": {
                        "predictions": {"type": "array", "items": {"type": "number"}},
                        "prices_usd": {"type": "array", "items": {"type": "number"}},
                        "model_version": {"type": "string"},
                    },
                },
                "DriftEntry": {
                    "type": "object",
                    "required": ["psi", "status"],
                    "properties": {
                        "psi": {
                            "type": "number",
                            "nullable": True,
                            "description": f"null below {DRIFT_MIN_RECORDS} records in the window",
                        },
                        "status": {
                            "type": "string",
                            "enum": list(STATUSES),
                            "description": f"{NOT_ENOUGH_DATA!r} below {DRIFT_MIN_RECORDS} records",
                        },
                    },
                },
                "Drift": {
                    "type": "object",
                    "required": [
                        "window",
                        "minimum",
                        "since",
                        "until",
                        "features",
                        "prediction",
                        "reference",
                    ],
                    "properties": {
                        "window": {"type": "integer", "minimum": 0, "description": "records in the window"},
                        "minimum": {
                            "type": "integer",
                            "description": "records the window needs before any column gets a PSI",
                        },
                        "since": {
                            "type": "string",
                            "format": "date-time",
                            "nullable": True,
                            "description": "arrival of the window's oldest record (UTC); null when empty",
                        },
                        "until": {
                            "type": "string",
                            "format": "date-time",
                            "nullable": True,
                            "description": "arrival of the window's newest record (UTC); null when empty",
                        },
                        "features": {
                            "type": "object",
                            "required": list(FEATURE_NAMES),
                            "properties": {
                                n: {"$ref": "#/components/schemas/DriftEntry"} for n in FEATURE_NAMES
                            },
                        },
                        "prediction": {"$ref": "#/components/schemas/DriftEntry"},
                        "reference": {
                            "type": "string",
                            "description": "the model_version the reference belongs to",
                        },
                    },
                },
                "Status": {"type": "object", "properties": {"status": {"type": "string"}}},
                "Ready": {
                    "type": "object",
                    "properties": {
                        "status": {"type": "string"},
                        "model_version": {"type": "string"},
                        # the commit the image was built from: with model_version, the build's identity
                        "revision": {"type": "string"},
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message", "details"],
                            "properties": {
                                "code": {"type": "integer"},
                                "message": {"type": "string"},
                                "details": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "required": ["field", "reason"],
                                        "properties": {
                                            "field": {"type": "string"},
                                            "reason": {"type": "string"},
                                        },
                                    },
                                },
                            },
                        }
                    },
                },
            }
        },
    }
