"""The feature schema: the one place that names the model's inputs, their order, units and domain.

Training, request validation, the playground page, the OpenAPI document and the tests all import
this module; nothing else may spell out the feature list.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Feature:
    """One model input as a client sends it.

    Attributes:
        name: The JSON key and the dataset column.
        unit: What one unit of the value means.
        description: One line for the API reference and the page.
        minimum: Smallest valid value (inclusive).
        maximum: Largest valid value (inclusive).
        example: A real value (the dataset's first block group, in Berkeley).
    """

    name: str
    unit: str
    description: str
    minimum: float
    maximum: float
    example: float

    def admits(self, value: float) -> bool:
        """Whether a finite value lies inside the valid domain."""
        return self.minimum <= value <= self.maximum


# The order is the dataset's column order and the model's input order.
# The domains admit every row of the dataset with room to spare, and reject what cannot be a
# California block group: negative counts and ages, coordinates outside the state's bounding box.
FEATURES: tuple[Feature, ...] = (
    Feature("MedInc", "tens of thousands of USD", "median household income", 0.0, 50.0, 8.3252),
    Feature("HouseAge", "years", "median age of the houses", 0.0, 150.0, 41.0),
    Feature("AveRooms", "rooms per household", "average number of rooms", 0.0, 1000.0, 6.984127),
    Feature("AveBedrms", "bedrooms per household", "average number of bedrooms", 0.0, 500.0, 1.02381),
    Feature("Population", "people", "block group population", 0.0, 100000.0, 322.0),
    Feature("AveOccup", "people per household", "average household size", 0.0, 2000.0, 2.555556),
    Feature("Latitude", "degrees north", "block group latitude", 32.0, 42.5, 37.88),
    Feature("Longitude", "degrees east", "block group longitude", -124.6, -114.0, -122.23),
)

FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
BY_NAME: dict[str, Feature] = {f.name: f for f in FEATURES}

TARGET_NAME = "MedHouseVal"
TARGET_UNIT_USD = 100_000.0  # the target is in units of $100k


def example_record() -> dict[str, float]:
    """A valid request record built from the features' example values."""
    return {f.name: f.example for f in FEATURES}


def schema_as_dict() -> list[dict[str, object]]:
    """The schema as JSON-ready dicts, for metadata.json and /metadata."""
    return [asdict(f) for f in FEATURES]


def schema_fingerprint() -> str:
    """A short hash of the schema; an artifact written for another schema will not match it."""
    blob = json.dumps(schema_as_dict(), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
