"""Feature engineering shared by training and serving.

The model sees 33 columns built from the 8 raw inputs (schema order: MedInc, HouseAge, AveRooms,
AveBedrms, Population, AveOccup, Latitude, Longitude):

* the 8 raw inputs;
* 4 ratios: rooms per person, bedrooms per room, households (Population / AveOccup) and income
  per person;
* 10 rotated coordinates (5 angles, both axes), because trees split on one axis at a time and
  California's coast and valleys run diagonally;
* 6 distances (km) to five large cities and to the nearest of them;
* 1 distance (km) to the Pacific coast, a polyline written down below;
* 4 neighbourhood prices: the mean target of the 4, 8 and 16 nearest training block groups, and
  the mean of log(target / MedInc) over the 16 nearest (what the area pays per unit of income,
  which the model scales by the row's own income).

The neighbourhood prices are derived from the target, so they are built without leakage:

* in training (`fit_transform`) every row gets them out of fold: KFold(5, shuffle=True,
  random_state=42) over the training rows, neighbours looked up among the other four folds;
* at serving time (`transform`, `transform_row`) they come from all training rows, through a
  table precomputed at training time on the dataset's own 0.01 degree grid (the census
  coordinates are rounded to 0.01 degree), covering the schema's whole coordinate domain.
  A lookup is one index computation, which keeps a one-row prediction far under 100 us with
  numpy only (no scipy, no KD-tree at serving time).

The coast distance depends on coordinates only and lives in the same table, so training and
serving read it the same way.

Training needs scipy (cKDTree) and scikit-learn (KFold); both are imported inside
`fit_transform` only, so the serving side imports this module with numpy alone.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.schema import BY_NAME, FEATURE_NAMES

N_RAW = len(FEATURE_NAMES)
# Column positions of the raw inputs (schema order).
MED_INC, HOUSE_AGE, AVE_ROOMS, AVE_BEDRMS, POPULATION, AVE_OCCUP, LATITUDE, LONGITUDE = (
    FEATURE_NAMES.index(name)
    for name in (
        "MedInc",
        "HouseAge",
        "AveRooms",
        "AveBedrms",
        "Population",
        "AveOccup",
        "Latitude",
        "Longitude",
    )
)

# Equirectangular projection to km around the state's middle latitude: within California the
# error against great-circle distance is a few percent, far below what matters to a tree.
KM_PER_DEG_LAT = 110.57
KM_PER_DEG_LON = 111.32 * math.cos(math.radians(36.5))

# City halls, written down by hand (degrees north, degrees east).
CITIES: tuple[tuple[str, float, float], ...] = (
    ("san_francisco", 37.7793, -122.4193),
    ("los_angeles", 34.0537, -118.2427),
    ("san_diego", 32.7157, -117.1611),
    ("san_jose", 37.3377, -121.8907),
    ("sacramento", 38.5816, -121.4944),
)

# The Pacific coast from the Oregon border to Mexico, written down by hand (lat, lon);
# coarse on purpose: a few km of error is noise next to the kNN prices.
COAST: tuple[tuple[float, float], ...] = (
    (42.00, -124.21),
    (41.75, -124.20),
    (40.80, -124.17),
    (40.44, -124.40),
    (39.45, -123.81),
    (38.95, -123.74),
    (38.33, -123.05),
    (37.99, -123.00),
    (37.81, -122.48),
    (37.50, -122.49),
    (36.96, -122.03),
    (36.60, -121.89),
    (36.27, -121.81),
    (35.66, -121.28),
    (35.37, -120.86),
    (34.95, -120.64),
    (34.45, -120.47),
    (34.41, -119.69),
    (34.28, -119.29),
    (34.03, -118.78),
    (34.01, -118.50),
    (33.74, -118.39),
    (33.75, -118.19),
    (33.60, -117.88),
    (33.20, -117.38),
    (32.85, -117.27),
    (32.53, -117.12),
)

ROTATION_DEGREES: tuple[int, ...] = (15, 30, 45, 60, 75)
NEIGHBOURS: tuple[int, ...] = (4, 8, 16)
RATIO_NEIGHBOURS = 16  # k for the log price-to-income column
OOF_FOLDS = 5
# Smallest denominator of a ratio: the schema admits AveOccup = 0 and AveRooms = 0, the data never
# come near it (minima 0.69 and 0.85), and a finite feature keeps every path NaN-free.
MIN_DENOMINATOR = 1e-3

# The lookup grid: the schema's coordinate domain at the census' own 0.01 degree resolution.
GRID_LAT0, GRID_LAT1 = BY_NAME["Latitude"].minimum, BY_NAME["Latitude"].maximum
GRID_LON0, GRID_LON1 = BY_NAME["Longitude"].minimum, BY_NAME["Longitude"].maximum
GRID_STEPS_PER_DEG = 100
GRID_ROWS = round((GRID_LAT1 - GRID_LAT0) * GRID_STEPS_PER_DEG) + 1
GRID_COLS = round((GRID_LON1 - GRID_LON0) * GRID_STEPS_PER_DEG) + 1
# Table columns: neighbourhood prices for each k, then coast distance.
KNN_COLUMNS: tuple[str, ...] = (
    *(f"knn{k}_price" for k in NEIGHBOURS),
    f"knn{RATIO_NEIGHBOURS}_log_price_per_income",
)
TABLE_COLUMNS: tuple[str, ...] = (*KNN_COLUMNS, "coast_km")

_COS_SIN = tuple((math.cos(math.radians(a)), math.sin(math.radians(a))) for a in ROTATION_DEGREES)

TABLE_FILE = "neighbourhood_table.npy"
FEATURES_META_FILE = "features.json"


def feature_names() -> list[str]:
    """Names of the model's columns, in order."""
    raw = list(FEATURE_NAMES)
    ratios = ["rooms_per_person", "bedrooms_per_room", "households", "income_per_person"]
    rot = [f"rot{a}_{axis}" for a in ROTATION_DEGREES for axis in ("u", "v")]
    cities = [f"km_{name}" for name, _, _ in CITIES] + ["km_nearest_city"]
    return [*raw, *ratios, *rot, *cities, *TABLE_COLUMNS]


N_FEATURES = 8 + 4 + 2 * len(ROTATION_DEGREES) + len(CITIES) + 1 + len(TABLE_COLUMNS)


def _grid_index(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    # floor(x + 0.5), written the same way in transform_row, so both paths pick the same cell.
    i = np.floor((lat - GRID_LAT0) * GRID_STEPS_PER_DEG + 0.5).astype(np.int64)
    j = np.floor((lon - GRID_LON0) * GRID_STEPS_PER_DEG + 0.5).astype(np.int64)
    return np.clip(i, 0, GRID_ROWS - 1) * GRID_COLS + np.clip(j, 0, GRID_COLS - 1)


def _cell_centres(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lat = GRID_LAT0 + (cells // GRID_COLS) / GRID_STEPS_PER_DEG
    lon = GRID_LON0 + (cells % GRID_COLS) / GRID_STEPS_PER_DEG
    return lat, lon


def _project_km(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    return np.column_stack([lon * KM_PER_DEG_LON, lat * KM_PER_DEG_LAT])


def coast_distance_km(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Distance in km from each point to the coast polyline."""
    points = _project_km(np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64))
    coast = _project_km(np.array([c[0] for c in COAST]), np.array([c[1] for c in COAST]))
    best = np.full(len(points), np.inf)
    for a, b in itertools.pairwise(coast):
        d = b - a
        t = np.clip(((points - a) @ d) / (d @ d), 0.0, 1.0)
        nearest = a + t[:, None] * d
        best = np.minimum(best, np.sqrt(((points - nearest) ** 2).sum(axis=1)))
    return best


def _closed_form(X: np.ndarray) -> np.ndarray:
    """The 28 columns computed from the row itself (raw, ratios, rotations, city distances)."""
    inc, rooms, beds = X[:, MED_INC], X[:, AVE_ROOMS], X[:, AVE_BEDRMS]
    pop, occ, lat, lon = X[:, POPULATION], X[:, AVE_OCCUP], X[:, LATITUDE], X[:, LONGITUDE]
    safe_occ = np.maximum(occ, MIN_DENOMINATOR)
    cols = [
        rooms / safe_occ,
        beds / np.maximum(rooms, MIN_DENOMINATOR),
        pop / safe_occ,
        inc / safe_occ,
    ]
    for c, s in _COS_SIN:
        cols.append(lon * c + lat * s)
        cols.append(lat * c - lon * s)
    dists = []
    for _, clat, clon in CITIES:
        dx = (lon - clon) * KM_PER_DEG_LON
        dy = (lat - clat) * KM_PER_DEG_LAT
        dists.append(np.sqrt(dx * dx + dy * dy))
    nearest = dists[0]
    for d in dists[1:]:
        nearest = np.minimum(nearest, d)
    return np.column_stack([X, *cols, *dists, nearest])


def _knn_prices(
    ref_lat: np.ndarray,
    ref_lon: np.ndarray,
    ref_y: np.ndarray,
    ref_income: np.ndarray,
    q_lat: np.ndarray,
    q_lon: np.ndarray,
    chunk: int = 200_000,
) -> np.ndarray:
    """The KNN_COLUMNS of each query point over the reference rows (training only)."""
    from scipy.spatial import cKDTree  # training-side dependency, kept out of the serving import

    tree = cKDTree(_project_km(ref_lat, ref_lon))
    kmax = max(*NEIGHBOURS, RATIO_NEIGHBOURS)
    log_ratio = np.log(ref_y) - np.log(np.maximum(ref_income, MIN_DENOMINATOR))
    out = np.empty((len(q_lat), len(KNN_COLUMNS)))
    for start in range(0, len(q_lat), chunk):
        stop = start + chunk
        _, idx = tree.query(_project_km(q_lat[start:stop], q_lon[start:stop]), k=kmax)
        neighbour_y = ref_y[idx]
        for col, k in enumerate(NEIGHBOURS):
            out[start:stop, col] = neighbour_y[:, :k].mean(axis=1)
        out[start:stop, len(NEIGHBOURS)] = log_ratio[idx[:, :RATIO_NEIGHBOURS]].mean(axis=1)
    return out


@dataclass
class FeatureTransformer:
    """Builds the model's 33 columns; fitted on training rows, then used for serving.

    Attributes:
        table: (GRID_ROWS * GRID_COLS, len(TABLE_COLUMNS)) float32, one row per grid cell.
    """

    table: np.ndarray | None = None

    # ---- training -------------------------------------------------------------------------
    def fit_transform(self, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Fit on training rows and return their features, neighbourhood prices out of fold.

        Args:
            X: (n, 8) raw inputs in schema order.
            y: (n,) target.

        Returns:
            (n, N_FEATURES) float64; a row's neighbourhood prices never use its own fold's targets.
        """
        from sklearn.model_selection import KFold  # training-side dependencies

        from model.data import RANDOM_STATE

        X = np.ascontiguousarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        cells = _grid_index(X[:, LATITUDE], X[:, LONGITUDE])
        q_lat, q_lon = _cell_centres(cells)
        oof = np.empty((len(X), len(KNN_COLUMNS)))
        folds = KFold(n_splits=OOF_FOLDS, shuffle=True, random_state=RANDOM_STATE)
        for fit_rows, held_rows in folds.split(X):
            oof[held_rows] = _knn_prices(
                X[fit_rows, LATITUDE],
                X[fit_rows, LONGITUDE],
                y[fit_rows],
                X[fit_rows, MED_INC],
                q_lat[held_rows],
                q_lon[held_rows],
            )

        all_cells = np.arange(GRID_ROWS * GRID_COLS)
        g_lat, g_lon = _cell_centres(all_cells)
        table = np.empty((len(all_cells), len(TABLE_COLUMNS)), dtype=np.float32)
        table[:, : len(KNN_COLUMNS)] = _knn_prices(
            X[:, LATITUDE], X[:, LONGITUDE], y, X[:, MED_INC], g_lat, g_lon
        )
        table[:, len(KNN_COLUMNS)] = coast_distance_km(g_lat, g_lon)
        self.table = table

        coast = table[cells, len(KNN_COLUMNS)].astype(np.float64)
        return np.column_stack([_closed_form(X), oof, coast])

    # ---- serving --------------------------------------------------------------------------
    def transform(self, X: np.ndarray) -> np.ndarray:
        """Features of any rows (test, batch requests): neighbourhood prices from the table.

        Args:
            X: (n, 8) raw inputs in schema order.

        Returns:
            (n, N_FEATURES) float64, C-contiguous.
        """
        table = self._fitted_table()
        X = np.ascontiguousarray(X, dtype=np.float64)
        looked_up = table[_grid_index(X[:, LATITUDE], X[:, LONGITUDE])].astype(np.float64)
        return np.ascontiguousarray(np.column_stack([_closed_form(X), looked_up]))

    def transform_row(self, row: Sequence[float]) -> list[float]:
        """The same columns as `transform` for one row, in plain Python floats (no numpy calls).

        Numpy's per-call overhead (~1 us) times ~40 operations would eat half the latency
        budget; the same arithmetic on floats gives bit-identical IEEE results in a few us.
        """
        inc, age, rooms, beds, pop, occ, lat, lon = (float(v) for v in row)
        safe_occ = occ if occ > MIN_DENOMINATOR else MIN_DENOMINATOR
        out = [
            inc,
            age,
            rooms,
            beds,
            pop,
            occ,
            lat,
            lon,
            rooms / safe_occ,
            beds / (rooms if rooms > MIN_DENOMINATOR else MIN_DENOMINATOR),
            pop / safe_occ,
            inc / safe_occ,
        ]
        for c, s in _COS_SIN:
            out.append(lon * c + lat * s)
            out.append(lat * c - lon * s)
        nearest = math.inf
        for _, clat, clon in CITIES:
            dx = (lon - clon) * KM_PER_DEG_LON
            dy = (lat - clat) * KM_PER_DEG_LAT
            d = math.sqrt(dx * dx + dy * dy)
            out.append(d)
            nearest = min(nearest, d)
        out.append(nearest)
        i = math.floor((lat - GRID_LAT0) * GRID_STEPS_PER_DEG + 0.5)
        j = math.floor((lon - GRID_LON0) * GRID_STEPS_PER_DEG + 0.5)
        i = 0 if i < 0 else GRID_ROWS - 1 if i >= GRID_ROWS else i
        j = 0 if j < 0 else GRID_COLS - 1 if j >= GRID_COLS else j
        out.extend(self._fitted_table()[i * GRID_COLS + j].tolist())
        return out

    def _fitted_table(self) -> np.ndarray:
        if self.table is None:
            raise RuntimeError("FeatureTransformer is not fitted; call fit_transform or load")
        return self.table

    # ---- persistence ----------------------------------------------------------------------
    def save(self, out_dir: Path) -> None:
        """Write the table (.npy, byte-stable) and the constants it was built with (.json)."""
        out_dir.mkdir(parents=True, exist_ok=True)
        np.save(out_dir / TABLE_FILE, self._fitted_table(), allow_pickle=False)
        meta = {
            "feature_names": feature_names(),
            "table_columns": list(TABLE_COLUMNS),
            "grid": [GRID_LAT0, GRID_LON0, GRID_STEPS_PER_DEG, GRID_ROWS, GRID_COLS],
        }
        (out_dir / FEATURES_META_FILE).write_text(json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, model_dir: Path, *, mmap: bool = True) -> FeatureTransformer:
        """Load a saved transformer; refuses one written with other constants.

        Args:
            model_dir: The artifact folder.
            mmap: Map the 22 MB table instead of reading it (fast start, shared between workers).

        Raises:
            ValueError: The table was built for another feature layout or grid.
        """
        meta = json.loads((model_dir / FEATURES_META_FILE).read_text())
        if meta["feature_names"] != feature_names() or meta["grid"] != [
            GRID_LAT0,
            GRID_LON0,
            GRID_STEPS_PER_DEG,
            GRID_ROWS,
            GRID_COLS,
        ]:
            raise ValueError(f"{model_dir} was written for another feature layout; retrain")
        table = np.load(model_dir / TABLE_FILE, mmap_mode="r" if mmap else None, allow_pickle=False)
        if table.shape != (GRID_ROWS * GRID_COLS, len(TABLE_COLUMNS)):
            raise ValueError(f"{model_dir / TABLE_FILE} has shape {table.shape}; retrain")
        return cls(table=table)
