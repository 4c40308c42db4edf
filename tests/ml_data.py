"""A small application_features table made from the real sample, for the model's tests.

It replaces the dbt feature mart in these tests and has the same contract: sk_id_curr, month,
target, then numeric features as double and categorical features as varchar.
"""

from __future__ import annotations

import functools

import duckdb
import numpy as np
import pandas as pd
import pytest

from flows.config import Settings
from tests.conftest import REAL_SAMPLE, REAL_SPLIT

NUMERIC = [
    "ext_source_1", "ext_source_2", "ext_source_3", "days_birth", "days_employed",
    "amt_credit", "amt_annuity", "amt_income_total", "amt_goods_price", "days_id_publish",
    "days_registration", "days_last_phone_change", "region_rating_client_w_city",
    "region_population_relative", "own_car_age", "cnt_children", "flag_document_3",
]
CATEGORICAL = [
    "code_gender", "name_contract_type", "name_education_type", "name_income_type",
    "name_family_status", "occupation_type", "organization_type", "flag_own_car",
]
MONTHS = ["history", "2020-10", "2020-11", "2020-12", "2021-01"]


@functools.cache
def _sample_features() -> pd.DataFrame:
    if not REAL_SAMPLE.exists():
        pytest.skip(f"real sample not found at {REAL_SAMPLE}")
    raw = pd.read_csv(REAL_SAMPLE)
    raw.columns = [name.lower() for name in raw.columns]
    month = np.concatenate([np.repeat(m, count) for m, (_, count) in zip(MONTHS, REAL_SPLIT,
                                                                         strict=True)])
    frame = pd.DataFrame({"sk_id_curr": raw["sk_id_curr"].astype("int64"), "month": month,
                          "target": raw["target"].astype("Int64")})
    for name in NUMERIC:
        frame[name] = raw[name].astype("float64")
    frame.loc[frame["days_employed"] == 365243, "days_employed"] = np.nan
    frame["credit_income_ratio"] = frame["amt_credit"] / frame["amt_income_total"]
    frame["annuity_income_ratio"] = frame["amt_annuity"] / frame["amt_income_total"]
    frame["ext_source_mean"] = frame[["ext_source_1", "ext_source_2", "ext_source_3"]].mean(axis=1)
    for name in CATEGORICAL:
        frame[name] = raw[name].astype(object).where(raw[name].notna(), None)
        frame.loc[frame[name] == "XNA", name] = None
    return frame


def sample_features(months: list[str] | None = None) -> pd.DataFrame:
    """Return a copy of the sample feature rows, optionally only those of ``months``."""
    frame = _sample_features().copy()
    if months is not None:
        frame = frame[frame["month"].isin(months)].reset_index(drop=True)
    return frame


def write_feature_table(settings: Settings, frame: pd.DataFrame) -> None:
    """Create or replace application_features in the warehouse of ``settings``."""
    numeric = [c for c in frame.columns if c not in ("sk_id_curr", "month", "target")
               and c not in CATEGORICAL and frame[c].dtype != object]
    casts = ["cast(sk_id_curr as bigint) as sk_id_curr", "cast(month as varchar) as month",
             "cast(target as integer) as target"]
    for column in frame.columns[3:]:
        sql_type = "double" if column in numeric else "varchar"
        casts.append(f"cast({column} as {sql_type}) as {column}")
    settings.warehouse.parent.mkdir(parents=True, exist_ok=True)
    connection = duckdb.connect(str(settings.warehouse))
    try:
        connection.register("rows_in", frame)
        connection.execute(f"create or replace table application_features as "
                           f"select {', '.join(casts)} from rows_in")
    finally:
        connection.close()
