"""Load the California Housing data with scikit-learn's own loader."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.datasets import fetch_california_housing
from sklearn.model_selection import train_test_split

from model.schema import FEATURE_NAMES

RANDOM_STATE = 42
TEST_SIZE = 0.2


class DatasetUnavailable(Exception):
    """Neither scikit-learn's cache nor a download could provide the dataset."""


@dataclass(frozen=True)
class Dataset:
    """Features in schema order and the target in units of $100k."""

    X: pd.DataFrame
    y: pd.Series

    @property
    def sha256(self) -> str:
        """A hash of the values themselves, so any change to the data changes it."""
        digest = hashlib.sha256()
        digest.update(np.ascontiguousarray(self.X.to_numpy(dtype=np.float64)).tobytes())
        digest.update(np.ascontiguousarray(self.y.to_numpy(dtype=np.float64)).tobytes())
        return digest.hexdigest()


@dataclass(frozen=True)
class Split:
    """The fixed train/test split every figure in this project is measured on."""

    X_train: pd.DataFrame
    X_test: pd.DataFrame
    y_train: pd.Series
    y_test: pd.Series


def load_dataset(data_home: str | None = None) -> Dataset:
    """Load the dataset; scikit-learn reads SCIKIT_LEARN_DATA when data_home is None.

    Args:
        data_home: Where scikit-learn's cache lives; None means its default, which honours
            the SCIKIT_LEARN_DATA environment variable.

    Returns:
        The 20,640 rows, columns in schema order.

    Raises:
        DatasetUnavailable: No cache and no way to download it; the message says what to set.
    """
    try:
        bunch = fetch_california_housing(data_home=data_home, as_frame=True)
    except OSError as exc:  # URLError and socket errors are OSErrors: no cache and no network
        raise DatasetUnavailable(
            f"cannot load California Housing ({exc.__class__.__name__}: {exc}); without internet, "
            "set SCIKIT_LEARN_DATA to a folder holding scikit-learn's cal_housing_py3.pkz"
        ) from exc
    X = bunch.data[list(FEATURE_NAMES)]
    return Dataset(X=X, y=bunch.target)


def split(data: Dataset) -> Split:
    """The project's one train/test split: 80/20 with random_state=42."""
    X_train, X_test, y_train, y_test = train_test_split(
        data.X, data.y, test_size=TEST_SIZE, random_state=RANDOM_STATE
    )
    return Split(X_train, X_test, y_train, y_test)
