"""Turning rows of ``application_features`` into the matrix LightGBM reads.

Every column of the feature table other than ``sk_id_curr``, ``month`` and ``target`` is a model
feature; text (varchar) columns are categorical. A categorical value is encoded as its position in
the category list saved with the model, so the code of a value never depends on which other rows
arrive in the same batch. Columns are picked by name, in the model's order, so the column order of
the incoming frame does not matter either.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from flows.errors import CreditflowError

logger = logging.getLogger(__name__)

ID_COLUMN = "sk_id_curr"
MONTH_COLUMN = "month"
TARGET_COLUMN = "target"
KEY_COLUMNS = (ID_COLUMN, MONTH_COLUMN, TARGET_COLUMN)


@dataclass(frozen=True)
class FeatureSpec:
    """The model's features in model order, and the known values of each categorical one."""

    features: tuple[str, ...]
    categories: dict[str, tuple[str, ...]]

    @property
    def categorical(self) -> list[str]:
        return [name for name in self.features if name in self.categories]

    def subset(self, keep: list[str]) -> FeatureSpec:
        """Return the spec restricted to ``keep``, in the original model order."""
        wanted = set(keep)
        features = tuple(name for name in self.features if name in wanted)
        return FeatureSpec(features, {k: v for k, v in self.categories.items() if k in wanted})

    def to_dict(self) -> dict:
        return {"features": list(self.features),
                "categories": {name: list(values) for name, values in self.categories.items()}}

    @classmethod
    def from_dict(cls, data: dict) -> FeatureSpec:
        return cls(tuple(data["features"]),
                   {name: tuple(values) for name, values in data["categories"].items()})


def split_columns(column_types: dict[str, str]) -> tuple[list[str], list[str]]:
    """Return (features, categorical features) from the feature table's column -> SQL type map."""
    features = [name for name in column_types if name not in KEY_COLUMNS]
    categorical = [name for name in features
                   if column_types[name].upper().startswith(("VARCHAR", "TEXT", "STRING"))]
    return features, categorical


def build_spec(frame: pd.DataFrame, features: list[str], categorical: list[str]) -> FeatureSpec:
    """Record each categorical feature's values seen in the training rows, sorted."""
    categories = {}
    for name in categorical:
        values = frame[name].dropna().astype(str).unique()
        categories[name] = tuple(sorted(values))
    return FeatureSpec(tuple(features), categories)


def missing_columns(frame: pd.DataFrame, spec: FeatureSpec) -> list[str]:
    return [name for name in spec.features if name not in frame.columns]


def to_matrix(frame: pd.DataFrame, spec: FeatureSpec, dtype: type = np.float64
              ) -> tuple[np.ndarray, dict[str, int]]:
    """Encode ``frame`` as a float matrix of ``dtype`` in model order.

    Returns the matrix and, per categorical column, how many non-missing values were not in the
    saved categories; such values are encoded as missing.
    """
    absent = missing_columns(frame, spec)
    if absent:
        raise CreditflowError(
            f"feature columns missing from the rows to encode: {', '.join(absent)}")
    matrix = np.empty((len(frame), len(spec.features)), dtype=dtype)
    unseen: dict[str, int] = {}
    for position, name in enumerate(spec.features):
        column = frame[name]
        if name in spec.categories:
            matrix[:, position], unseen_count = _encode_categorical(column, spec.categories[name])
            if unseen_count:
                unseen[name] = unseen_count
        else:
            matrix[:, position] = _to_float(column, name)
    return matrix, unseen


def _encode_categorical(column: pd.Series, categories: tuple[str, ...]) -> tuple[np.ndarray, int]:
    present = column.notna().to_numpy()
    if isinstance(column.dtype, pd.CategoricalDtype):
        # Look up each category once, then take the result by the column's codes.
        positions = pd.Index(list(categories)).get_indexer(
            column.cat.categories.astype(str))
        codes = np.append(positions, -1)[column.cat.codes.to_numpy()].astype(np.float64)
        unseen = int(np.count_nonzero((codes < 0) & present))
        codes[codes < 0] = np.nan
        return codes, unseen
    if pd.api.types.infer_dtype(column, skipna=True) in ("string", "empty"):
        values = column
    else:
        # Numbers or mixed values (rows sent to the API) are matched by their text.
        values = column.astype(object).where(present, None)
        values = values.map(lambda value: None if value is None else str(value))
    # Index lookup in C: missing and unknown values get -1, like pd.Categorical codes.
    codes = pd.Index(list(categories)).get_indexer(values).astype(np.float64)
    unseen = int(np.count_nonzero((codes < 0) & present))
    codes[codes < 0] = np.nan
    return codes, unseen


def _to_float(column: pd.Series, name: str) -> np.ndarray:
    try:
        numbers = pd.to_numeric(column, errors="raise")
        return numbers.to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError) as error:
        raise CreditflowError(
            f"feature column {name} contains non-numeric values ({error}) but the model reads "
            "it as numeric: check the feature table's column type (dbt marts) and rebuild it"
        ) from error
