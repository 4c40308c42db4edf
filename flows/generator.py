"""Generator of Home-Credit-shaped application files for demos, tests and benchmarks.

The files follow the column contract of :mod:`flows.schema`: ``initial.csv`` (labeled history)
and one ``YYYYMMDD.csv`` per month, with the 122 columns in file order. Values have the real
ranges, category values and missingness: building columns are missing together for about half
the rows, ``EXT_SOURCE_1`` for 56 %, ``OWN_CAR_AGE`` exactly when ``FLAG_OWN_CAR = 'N'``.
Pensioners and unemployed applicants carry the sentinels ``DAYS_EMPLOYED = 365243`` and
``ORGANIZATION_TYPE = 'XNA'``, and ``CODE_GENDER = 'XNA'`` occurs now and then. Frequencies and
ranges were calibrated against column statistics of the public ``application_train.csv``, and
no real row is used.

``TARGET`` is drawn from a logistic model of a hidden creditworthiness and of observed columns
(age, employment, credit and annuity against income, gender, education, region rating, ...).
The three ``EXT_SOURCE_*`` scores measure the creditworthiness with noise, and the intercept
sets a default rate near 8 %. With 20,000 history rows, a small LightGBM model scored a later
month of 5,000 rows with an AUC of 0.73 to 0.77 over five seeds (measured once, not a
guarantee).

Rows are drawn in chunks of :data:`CHUNK_ROWS` with vectorized NumPy, each chunk from its own
random stream derived from (seed, file, chunk index), and appended to the file, so memory stays
flat at any size and the same arguments give byte-identical files.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flows import schema
from flows.errors import CreditflowError
from flows.months import HISTORY, month_range, monthly_file_name, parse_month

logger = logging.getLogger(__name__)

# Rows drawn and written at a time. The output depends on it (each chunk has its own random
# stream), so changing it changes the generated data of every seed.
CHUNK_ROWS = 50_000
# First SK_ID_CURR of the history file, as in the public data. Later files continue the sequence.
FIRST_ID = 100_002

Shifts = dict[tuple[str, str], float]
# One validated shift of a month: (column, category value or None for numeric, factor).
_MonthShift = tuple[str, str | None, float]
ProgressCallback = Callable[[int], None]

_EMPLOYMENT_SENTINEL_INCOME_TYPES = ("Pensioner", "Unemployed")
_SHIFT_EXAMPLE = "AMT_INCOME_TOTAL:2021-01:1.5 or CODE_GENDER=M:2021-01:1.5"

# ---------------------------------------------------------------------------------------------
# Frequencies of the category values, as shares that are normalized to sum to 1.
# ---------------------------------------------------------------------------------------------

_CONTRACT_TYPE = {"Cash loans": 0.905, "Revolving loans": 0.095}
# CODE_GENDER 'XNA' is 4 rows in 307,511 in the public data. It is more frequent here so that
# files of a few thousand rows contain it too.
_GENDER = {"F": 0.6575, "M": 0.342, "XNA": 0.0005}
_TYPE_SUITE = {  # 0.42 % of the rows leave it empty
    "Unaccompanied": 0.8046, "Family": 0.1305, "Spouse, partner": 0.0369, "Children": 0.0106,
    "Other_B": 0.0058, "Other_A": 0.0028, "Group of people": 0.0009,
}
# Income type of applicants who are not pensioners. Whether an applicant is a pensioner is drawn
# from age first.
_INCOME_TYPE_WORKING_AGE = {
    "Working": 0.628, "Commercial associate": 0.284, "State servant": 0.0862,
    "Unemployed": 0.0003, "Student": 0.0002, "Businessman": 0.0001, "Maternity leave": 0.0001,
}
_EDUCATION = {
    "Secondary / secondary special": 0.7102, "Higher education": 0.2434,
    "Incomplete higher": 0.0334, "Lower secondary": 0.0124, "Academic degree": 0.0006,
}
_FAMILY_STATUS = {
    "Married": 0.6388, "Single / not married": 0.1478, "Civil marriage": 0.0968,
    "Separated": 0.0643, "Widow": 0.0522, "Unknown": 0.0001,
}
_HOUSING = {
    "House / apartment": 0.8934, "Municipal apartment": 0.0364, "With parents": 0.0302,
    "Rented apartment": 0.0159, "Office apartment": 0.0085, "Co-op apartment": 0.0036,
}
# Occupation of employed applicants. 14.5 % of them leave it empty, and pensioners always do.
_OCCUPATION = {
    "Laborers": 0.179, "Sales staff": 0.104, "Core staff": 0.0897, "Managers": 0.0695,
    "Drivers": 0.0605, "High skill tech staff": 0.037, "Accountants": 0.0319,
    "Medicine staff": 0.0278, "Security staff": 0.0219, "Cooking staff": 0.0193,
    "Cleaning staff": 0.0151, "Private service staff": 0.0086, "Low-skill Laborers": 0.0068,
    "Waiters/barmen staff": 0.0044, "Secretaries": 0.0042, "Realty agents": 0.0024,
    "HR staff": 0.0018, "IT staff": 0.0017,
}
_WEEKDAY = {
    "TUESDAY": 0.1751, "WEDNESDAY": 0.1689, "MONDAY": 0.1649, "THURSDAY": 0.1645,
    "FRIDAY": 0.1637, "SATURDAY": 0.1101, "SUNDAY": 0.0528,
}
# Employer of employed applicants. Pensioners and unemployed applicants get 'XNA'.
_ORGANIZATION = {
    "Business Entity Type 3": 0.221, "Self-employed": 0.125, "Other": 0.054, "Medicine": 0.036,
    "Business Entity Type 2": 0.034, "Government": 0.034, "School": 0.029,
    "Trade: type 7": 0.025, "Kindergarten": 0.022, "Construction": 0.022,
    "Business Entity Type 1": 0.019, "Transport: type 4": 0.018, "Trade: type 3": 0.011,
    "Industry: type 9": 0.011, "Industry: type 3": 0.011, "Security": 0.011, "Housing": 0.0096,
    "Industry: type 11": 0.0088, "Military": 0.0086, "Bank": 0.0082, "Agriculture": 0.008,
    "Police": 0.0076, "Transport: type 2": 0.0072, "Postal": 0.007,
    "Security Ministries": 0.0064, "Trade: type 2": 0.0062, "Restaurant": 0.0059,
    "Services": 0.0051, "University": 0.0043, "Industry: type 7": 0.0043,
    "Transport: type 3": 0.0039, "Industry: type 1": 0.0034, "Hotel": 0.0031,
    "Electricity": 0.0031, "Industry: type 4": 0.0028, "Trade: type 6": 0.0021,
    "Industry: type 5": 0.0019, "Insurance": 0.0019, "Telecom": 0.0019, "Emergency": 0.0018,
    "Industry: type 2": 0.0015, "Advertising": 0.0014, "Realtor": 0.0013, "Culture": 0.0012,
    "Industry: type 12": 0.0012, "Trade: type 1": 0.0011, "Mobile": 0.001,
    "Legal Services": 0.001, "Cleaning": 0.00085, "Transport: type 1": 0.00065,
    "Industry: type 6": 0.00036, "Industry: type 10": 0.00035, "Religion": 0.00028,
    "Industry: type 13": 0.00022, "Trade: type 4": 0.0002, "Trade: type 5": 0.00016,
    "Industry: type 8": 0.00008,
}
_FONDKAPREMONT = {
    "reg oper account": 0.7704, "reg oper spec account": 0.1179, "org spec account": 0.0596,
    "not specified": 0.052,
}
_HOUSETYPE = {"block of flats": 0.9846, "specific housing": 0.008, "terraced house": 0.0074}
_WALLSMATERIAL = {
    "Panel": 0.4403, "Stone, brick": 0.4214, "Block": 0.0681, "Wooden": 0.0325, "Mixed": 0.0159,
    "Monolithic": 0.0119, "Others": 0.0099,
}
_EMERGENCYSTATE = {"No": 0.9851, "Yes": 0.0149}

# Share of rows with any building information. The other rows have every building column empty.
_BUILDING_PRESENT = 0.535
# Share of the rows with building information that fill each column (or stem of three columns),
# so that the overall missing rate matches the public data.
_BUILDING_FILLED = {
    "APARTMENTS": 0.925, "BASEMENTAREA": 0.78, "YEARS_BEGINEXPLUATATION": 0.96,
    "YEARS_BUILD": 0.625, "COMMONAREA": 0.565, "ELEVATORS": 0.875, "ENTRANCES": 0.94,
    "FLOORSMAX": 0.95, "FLOORSMIN": 0.60, "LANDAREA": 0.77, "LIVINGAPARTMENTS": 0.59,
    "LIVINGAREA": 0.935, "NONLIVINGAPARTMENTS": 0.57, "NONLIVINGAREA": 0.85,
    "TOTALAREA_MODE": 0.97, "FONDKAPREMONT_MODE": 0.59, "HOUSETYPE_MODE": 0.935,
    "WALLSMATERIAL_MODE": 0.92, "EMERGENCYSTATE_MODE": 0.985,
}
_BUILDING_STEMS = [name.removesuffix("_AVG") for name in schema.BUILDING_COLUMNS
                   if name.endswith("_AVG")]
_DOCUMENT_RATES = {
    2: 0.00004, 4: 0.00008, 5: 0.0151, 7: 0.0002, 9: 0.0039, 10: 0.00002, 11: 0.0039,
    12: 0.00001, 13: 0.0035, 14: 0.0029, 15: 0.0012, 16: 0.0099, 17: 0.0003, 18: 0.0081,
    19: 0.0006, 20: 0.0005, 21: 0.0003,
}

# ---------------------------------------------------------------------------------------------
# Effects on the log-odds of default (TARGET = 1). Values not listed have no effect.
# ---------------------------------------------------------------------------------------------

_INTERCEPT = -3.1
_EFFECT_CREDITWORTHINESS = -1.0
_EFFECTS = {
    "NAME_CONTRACT_TYPE": {"Revolving loans": -0.35},
    "CODE_GENDER": {"M": 0.3},
    "NAME_INCOME_TYPE": {
        "Working": 0.1, "State servant": -0.15, "Pensioner": -0.2, "Unemployed": 1.0,
        "Maternity leave": 1.2, "Student": -0.5, "Businessman": -1.0,
    },
    "NAME_EDUCATION_TYPE": {
        "Higher education": -0.35, "Academic degree": -0.7, "Lower secondary": 0.3,
    },
    "NAME_FAMILY_STATUS": {
        "Married": -0.05, "Single / not married": 0.15, "Civil marriage": 0.2, "Widow": -0.1,
    },
    "NAME_HOUSING_TYPE": {
        "With parents": 0.2, "Rented apartment": 0.35, "Municipal apartment": 0.1,
        "Office apartment": -0.2,
    },
    "OCCUPATION_TYPE": {
        "Low-skill Laborers": 0.6, "Drivers": 0.3, "Waiters/barmen staff": 0.3,
        "Security staff": 0.25, "Laborers": 0.2, "Cooking staff": 0.2, "Cleaning staff": 0.15,
        "Sales staff": 0.1, "Realty agents": 0.1, "Managers": -0.2,
        "High skill tech staff": -0.25, "Core staff": -0.15, "Medicine staff": -0.1,
        "HR staff": -0.2, "IT staff": -0.2, "Accountants": -0.4, "Secretaries": -0.1,
        "Private service staff": -0.1,
    },
    "ORGANIZATION_TYPE": {
        "Self-employed": 0.15, "Transport: type 3": 0.4, "Industry: type 1": 0.2,
        "Restaurant": 0.2, "Construction": 0.2, "Realtor": 0.2, "Cleaning": 0.2,
        "Agriculture": 0.1, "Trade: type 3": 0.1, "Bank": -0.3, "Police": -0.3,
        "Military": -0.3, "Security Ministries": -0.3, "University": -0.3,
        "Trade: type 4": -0.4, "Industry: type 12": -0.5, "School": -0.2, "Government": -0.1,
    },
}


def _codes_of(column: str, frequencies: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """Return the schema codes (indexes into ``schema.CATEGORIES[column]``) and probabilities."""
    values = schema.CATEGORIES[column]
    codes = np.array([values.index(value) for value in frequencies], dtype=np.int16)
    weights = np.array(list(frequencies.values()), dtype=float)
    return codes, weights / weights.sum()


def _effect_table(column: str) -> np.ndarray:
    """Return the log-odds effect of each category code of ``column``, with 0 for missing (-1)."""
    values = schema.CATEGORIES[column]
    effects = _EFFECTS[column]
    # One slot more than the values, so that code -1 (missing) indexes the trailing 0.
    return np.array([effects.get(value, 0.0) for value in values] + [0.0])


def _region_table() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the regions' relative population, client rating and share of applicants.

    The table is drawn once from a fixed seed, independent of the user's seed, so every run
    uses the same regions. The most populous regions (10.5 % of applicants) rate 1, the least
    populous (15.5 %) rate 3, as in the public data.
    """
    rng = np.random.default_rng(20180517)
    count = 80
    population = np.round(np.exp(rng.uniform(np.log(0.0005), np.log(0.0725), count)), 6)
    population[0] = 0.072508
    share = population**0.35 * rng.uniform(0.5, 1.5, count)
    share /= share.sum()
    order = np.argsort(-population)
    cumulative = np.cumsum(share[order])
    rating = np.full(count, 2, dtype=np.int64)
    rating[order[cumulative <= 0.105]] = 1
    rating[order[cumulative > 1 - 0.155]] = 3
    return population, rating, share


_REGION_POPULATION, _REGION_RATING, _REGION_SHARE = _region_table()


# ---------------------------------------------------------------------------------------------
# Drawing one chunk of applications
# ---------------------------------------------------------------------------------------------


class _Draw:
    """Columns of one chunk as NumPy arrays, drawn from one random stream.

    Category columns contain int16 codes into ``schema.CATEGORIES[column]``, with -1 for
    missing. Numeric columns contain int64 or float64 values, with NaN for missing.
    """

    def __init__(self, rng: np.random.Generator, rows: int) -> None:
        self.rng = rng
        self.n = rows
        self.columns: dict[str, np.ndarray] = {}

    def category(self, column: str, frequencies: dict[str, float]) -> np.ndarray:
        codes, probabilities = _codes_of(column, frequencies)
        return codes[self.rng.choice(len(codes), size=self.n, p=probabilities)]

    def flag(self, rate: float | np.ndarray) -> np.ndarray:
        return (self.rng.random(self.n) < rate).astype(np.int64)

    def missing(self, values: np.ndarray, rate: float | np.ndarray) -> np.ndarray:
        """Return ``values`` as float with a share ``rate`` of them set to NaN."""
        result = values.astype(float)
        result[self.rng.random(self.n) < rate] = np.nan
        return result


def _draw_person(draw: _Draw) -> dict[str, np.ndarray]:
    """Draw age, gender, education, family and housing, and return hidden values for later steps."""
    rng, n, cols = draw.rng, draw.n, draw.columns
    age = 20.5 + 48.6 * rng.beta(1.5, 1.7, n)
    cols["DAYS_BIRTH"] = -np.round(age * 365.25).astype(np.int64)
    cols["CODE_GENDER"] = draw.category("CODE_GENDER", _GENDER)
    cols["NAME_EDUCATION_TYPE"] = draw.category("NAME_EDUCATION_TYPE", _EDUCATION)

    family = draw.category("NAME_FAMILY_STATUS", _FAMILY_STATUS)
    cols["NAME_FAMILY_STATUS"] = family
    values = schema.CATEGORIES["NAME_FAMILY_STATUS"]
    couple = np.isin(family, [values.index("Married"), values.index("Civil marriage")])
    has_children = rng.random(n) < np.where(couple, 0.36, 0.19) * (age < 60)
    children = np.where(has_children, 1 + rng.poisson(0.35, n), 0).astype(np.int64)
    cols["CNT_CHILDREN"] = children
    cols["CNT_FAM_MEMBERS"] = (children + np.where(couple, 2, 1)).astype(float)

    housing = draw.category("NAME_HOUSING_TYPE", _HOUSING)
    with_parents = schema.CATEGORIES["NAME_HOUSING_TYPE"].index("With parents")
    cols["NAME_HOUSING_TYPE"] = np.where((age < 30) & (rng.random(n) < 0.06), with_parents,
                                         housing).astype(np.int16)
    cols["FLAG_OWN_REALTY"] = np.where(rng.random(n) < 0.694, 1, 0).astype(np.int16)
    own_car = rng.random(n) < 0.34
    cols["FLAG_OWN_CAR"] = own_car.astype(np.int16)
    car_age = np.floor(rng.gamma(1.7, 6.5, n))
    car_age = np.where(rng.random(n) < 0.012, rng.choice([64.0, 65.0], n), np.minimum(car_age, 60))
    cols["OWN_CAR_AGE"] = np.where(own_car, car_age, np.nan)
    return {"age": age}


def _draw_employment(draw: _Draw, age: np.ndarray) -> dict[str, np.ndarray]:
    """Draw income type, employment, occupation and employer, with sentinels for pensioners."""
    rng, n, cols = draw.rng, draw.n, draw.columns
    income_values = schema.CATEGORIES["NAME_INCOME_TYPE"]
    pensioner = rng.random(n) < 0.03 + 0.93 / (1 + np.exp(-(age - 56.5) / 2.0))
    income_type = draw.category("NAME_INCOME_TYPE", _INCOME_TYPE_WORKING_AGE)
    income_type[pensioner] = income_values.index("Pensioner")
    cols["NAME_INCOME_TYPE"] = income_type
    sentinel_codes = [income_values.index(name) for name in _EMPLOYMENT_SENTINEL_INCOME_TYPES]
    not_employed = np.isin(income_type, sentinel_codes)

    years = np.minimum(rng.gamma(0.9, 6.5, n), np.maximum(age - 18.0, 0.0))
    days = -np.round(years * 365.25).astype(np.int64)
    cols["DAYS_EMPLOYED"] = np.where(not_employed, schema.DAYS_EMPLOYED_NOT_EMPLOYED, days)

    organization = draw.category("ORGANIZATION_TYPE", _ORGANIZATION)
    xna = schema.CATEGORIES["ORGANIZATION_TYPE"].index(schema.MISSING_CATEGORY)
    cols["ORGANIZATION_TYPE"] = np.where(not_employed, xna, organization).astype(np.int16)
    occupation = draw.category("OCCUPATION_TYPE", _OCCUPATION)
    no_occupation = not_employed | (rng.random(n) < 0.145)
    cols["OCCUPATION_TYPE"] = np.where(no_occupation, -1, occupation).astype(np.int16)

    cols["FLAG_MOBIL"] = np.ones(n, dtype=np.int64)
    cols["FLAG_EMP_PHONE"] = (~not_employed).astype(np.int64)
    cols["FLAG_WORK_PHONE"] = draw.flag(np.where(not_employed, 0.02, 0.24))
    cols["FLAG_CONT_MOBILE"] = draw.flag(0.998)
    cols["FLAG_PHONE"] = draw.flag(np.where(not_employed, 0.4, 0.25))
    cols["FLAG_EMAIL"] = draw.flag(np.where(not_employed, 0.01, 0.066))
    return {"employed_years": np.where(not_employed, 0.0, years), "not_employed": not_employed}


def _draw_loan(draw: _Draw, hidden: dict[str, np.ndarray]) -> None:
    """Draw income, contract type, credit, annuity and goods price."""
    rng, n, cols = draw.rng, draw.n, draw.columns
    education = cols["NAME_EDUCATION_TYPE"]
    education_values = schema.CATEGORIES["NAME_EDUCATION_TYPE"]
    education_effect = np.select(
        [education == education_values.index("Higher education"),
         education == education_values.index("Academic degree"),
         education == education_values.index("Lower secondary")],
        [0.25, 0.45, -0.15], 0.0)
    male = cols["CODE_GENDER"] == schema.CATEGORIES["CODE_GENDER"].index("M")
    log_income = (np.log(140_000) + 0.45 * rng.standard_normal(n) + education_effect
                  + 0.15 * male - 0.3 * hidden["not_employed"])
    income = np.exp(log_income)
    income *= np.where(rng.random(n) < 0.0005, rng.uniform(5, 20, n), 1.0)
    step = np.where(rng.random(n) < 0.6, 22_500.0, 2_250.0)
    cols["AMT_INCOME_TOTAL"] = np.maximum(np.round(income / step) * step, 25_650.0)

    contract = draw.category("NAME_CONTRACT_TYPE", _CONTRACT_TYPE)
    cols["NAME_CONTRACT_TYPE"] = contract
    revolving = contract == schema.CATEGORIES["NAME_CONTRACT_TYPE"].index("Revolving loans")

    # Cash loans: a goods price in steps of 4,500, a credit of the price plus insurance and
    # fees, and an annuity of a 12 to 60 month term at a monthly rate of 0.8 to 2.8 %. A loan
    # whose annuity exceeds the applicant's payment limit (30 to 60 % of income) is cut to it.
    log_goods = (np.log(470_000) + 0.35 * (log_income - np.log(140_000))
                 + 0.6 * rng.standard_normal(n))
    markup = np.where(rng.random(n) < 0.3, 1.0, 1.0 + rng.gamma(2.0, 0.08, n))
    term = rng.choice([12, 18, 24, 30, 36, 48, 60], n,
                      p=[0.22, 0.1, 0.24, 0.1, 0.18, 0.11, 0.05])
    monthly_rate = rng.uniform(0.008, 0.028, n)
    annuity_per_credit = monthly_rate / (1 - (1 + monthly_rate) ** -term)
    payment_limit = rng.uniform(0.3, 0.6, n) * cols["AMT_INCOME_TOTAL"]
    goods = np.minimum(np.exp(log_goods), payment_limit / (annuity_per_credit * markup))
    goods = np.clip(np.round(goods / 4_500) * 4_500, 45_000, 4_050_000)
    cash_credit = np.round(goods * markup * 2) / 2
    cash_annuity = np.round(cash_credit * annuity_per_credit * 2) / 2

    # Revolving loans: a limit in steps of 22,500 and a payment of 5 to 10 % of it.
    limit = 22_500.0 * (6 + np.minimum(rng.geometric(0.15, n) - 1, 54))
    revolving_annuity = limit * rng.choice([0.05, 0.075, 0.1], n, p=[0.8, 0.12, 0.08])

    cols["AMT_CREDIT"] = np.where(revolving, limit, cash_credit)
    cols["AMT_ANNUITY"] = draw.missing(np.where(revolving, revolving_annuity, cash_annuity), 0.0001)
    goods_price = np.where(revolving, limit, goods)
    cols["AMT_GOODS_PRICE"] = np.where(revolving & (rng.random(n) < 0.01), np.nan, goods_price)
    suite = draw.category("NAME_TYPE_SUITE", _TYPE_SUITE)
    cols["NAME_TYPE_SUITE"] = np.where(rng.random(n) < 0.0042, -1, suite).astype(np.int16)


def _draw_region_and_process(draw: _Draw, hidden: dict[str, np.ndarray]) -> None:
    """Draw region, address mismatch flags, dates of registration, ID and phone, and the hour."""
    rng, n, cols = draw.rng, draw.n, draw.columns
    age = hidden["age"]
    region = rng.choice(len(_REGION_SHARE), n, p=_REGION_SHARE)
    cols["REGION_POPULATION_RELATIVE"] = _REGION_POPULATION[region]
    rating = _REGION_RATING[region]
    cols["REGION_RATING_CLIENT"] = rating
    city_step = np.where(rng.random(n) < 0.05, rng.choice([-1, 1], n), 0)
    cols["REGION_RATING_CLIENT_W_CITY"] = np.clip(rating + city_step, 1, 3)

    cols["DAYS_REGISTRATION"] = -np.round(
        np.minimum(rng.gamma(1.6, 3_500, n), (age - 14) * 365.25)).astype(float)
    # Passports are issued at 14, 20 and 45 and often reissued in between.
    issue_age = np.select([age >= 45, age >= 20], [45.0, 20.0], 14.0)
    since_issue = (age - issue_age) * 365.25
    since_issue = np.minimum(since_issue, rng.random(n) ** 0.8 * 6_500)
    cols["DAYS_ID_PUBLISH"] = -np.round(np.minimum(since_issue, 7_197)).astype(np.int64)
    phone_change = np.minimum(rng.gamma(1.1, 1_050, n), 4_292)
    cols["DAYS_LAST_PHONE_CHANGE"] = np.where(rng.random(n) < 0.12, 0.0, -np.round(phone_change))

    cols["WEEKDAY_APPR_PROCESS_START"] = draw.category("WEEKDAY_APPR_PROCESS_START", _WEEKDAY)
    hour = np.round(rng.normal(12.0, 3.2, n))
    cols["HOUR_APPR_PROCESS_START"] = np.clip(hour, 0, 23).astype(np.int64)

    employed = ~hidden["not_employed"]
    live_city_not_work = (rng.random(n) < 0.22) & employed
    reg_city_not_live = rng.random(n) < 0.078
    reg_city_not_work = live_city_not_work | (reg_city_not_live & employed & (rng.random(n) < 0.6))
    reg_city_not_work |= employed & (rng.random(n) < 0.04)
    live_region_not_work = live_city_not_work & (rng.random(n) < 0.2)
    reg_region_not_live = reg_city_not_live & (rng.random(n) < 0.2)
    reg_region_not_work = live_region_not_work | (reg_region_not_live & employed)
    reg_region_not_work |= reg_city_not_work & (rng.random(n) < 0.05)
    cols["REG_REGION_NOT_LIVE_REGION"] = reg_region_not_live.astype(np.int64)
    cols["REG_REGION_NOT_WORK_REGION"] = reg_region_not_work.astype(np.int64)
    cols["LIVE_REGION_NOT_WORK_REGION"] = live_region_not_work.astype(np.int64)
    cols["REG_CITY_NOT_LIVE_CITY"] = reg_city_not_live.astype(np.int64)
    cols["REG_CITY_NOT_WORK_CITY"] = reg_city_not_work.astype(np.int64)
    cols["LIVE_CITY_NOT_WORK_CITY"] = live_city_not_work.astype(np.int64)


def _score(normal_score: np.ndarray, location: float, scale: float) -> np.ndarray:
    """Map a standard normal score into (0, 1) with a logit-normal shape."""
    return 1.0 / (1.0 + np.exp(-(location + scale * normal_score)))


def _draw_external_scores(draw: _Draw, hidden: dict[str, np.ndarray]) -> None:
    """Draw the three bureau scores as noisy measurements of the hidden creditworthiness."""
    rng, n, cols = draw.rng, draw.n, draw.columns
    worth = hidden["creditworthiness"]
    age_z = (hidden["age"] - 44.0) / 12.0
    score_1 = 0.5 * worth + 0.6 * age_z + 0.55 * rng.standard_normal(n)
    score_2 = 0.65 * worth + 0.65 * rng.standard_normal(n)
    score_3 = 0.6 * worth + 0.2 * age_z + 0.6 * rng.standard_normal(n)
    cols["EXT_SOURCE_1"] = draw.missing(_score(score_1, 0.02, 0.95), 0.564)
    cols["EXT_SOURCE_2"] = draw.missing(_score(score_2, 0.1, 0.95), 0.0021)
    cols["EXT_SOURCE_3"] = draw.missing(_score(score_3, 0.08, 0.9), 0.198)


def _building_value(rng: np.random.Generator, stem: str, size: np.ndarray) -> np.ndarray:
    """Draw the normalized building statistic of ``stem`` (in [0, 1]) for buildings of ``size``."""
    n = len(size)
    noise = rng.standard_normal(n)
    if stem == "YEARS_BEGINEXPLUATATION":
        wear = np.where(rng.random(n) < 0.02, rng.uniform(0.05, 0.5, n), rng.gamma(1.2, 0.018, n))
        return 1.0 - np.minimum(wear, 1.0)
    if stem == "YEARS_BUILD":
        return np.clip(rng.normal(0.755, 0.11, n), 0.0, 1.0)
    if stem == "FLOORSMAX":
        return np.minimum(np.maximum(np.round(4 * size + rng.normal(0, 1.5, n)), 0), 24) / 24
    if stem == "FLOORSMIN":
        return np.minimum(np.maximum(np.round(4 * size + rng.normal(0, 2, n)), 0), 24) / 24
    if stem == "ELEVATORS":
        count = np.where(rng.random(n) < 0.55, 0, np.round(2 * size + rng.gamma(1, 1, n)))
        return np.minimum(count * 0.04, 1.0)
    if stem == "ENTRANCES":
        return np.minimum(np.maximum(np.round(4 * size + rng.normal(0, 1.5, n)), 1), 29) / 29
    if stem in ("NONLIVINGAPARTMENTS", "NONLIVINGAREA"):
        zero = rng.random(n) < (0.7 if stem == "NONLIVINGAPARTMENTS" else 0.45)
        return np.where(zero, 0.0, np.minimum(0.025 * size * np.exp(0.9 * noise), 1.0))
    medians = {
        "APARTMENTS": 0.088, "BASEMENTAREA": 0.076, "COMMONAREA": 0.019, "LANDAREA": 0.047,
        "LIVINGAPARTMENTS": 0.075, "LIVINGAREA": 0.075, "TOTALAREA_MODE": 0.069,
    }
    spread = {"COMMONAREA": 0.9, "LANDAREA": 0.7}.get(stem, 0.25)
    return np.minimum(medians[stem] * size * np.exp(spread * noise), 1.0)


def _draw_building(draw: _Draw) -> None:
    """Draw the building columns: all empty for 46.5 % of the rows, else filled per stem.

    The ``_AVG``, ``_MODE`` and ``_MEDI`` columns of a stem are filled or empty together and
    differ by small noise, as the three statistics of one building do.
    """
    rng, n, cols = draw.rng, draw.n, draw.columns
    present = rng.random(n) < _BUILDING_PRESENT
    size = np.exp(rng.normal(0.0, 0.7, n))
    for stem in _BUILDING_STEMS:
        filled = present & (rng.random(n) < _BUILDING_FILLED[stem])
        base = _building_value(rng, stem, size)
        for suffix, noise in (("AVG", 0.0), ("MODE", 0.04), ("MEDI", 0.015)):
            value = base * np.exp(noise * rng.standard_normal(n)) if noise else base
            value = np.round(np.clip(value, 0.0, 1.0), 4)
            cols[f"{stem}_{suffix}"] = np.where(filled, value, np.nan)
    total = np.round(_building_value(rng, "TOTALAREA_MODE", size), 4)
    filled = present & (rng.random(n) < _BUILDING_FILLED["TOTALAREA_MODE"])
    cols["TOTALAREA_MODE"] = np.where(filled, total, np.nan)
    for column, frequencies in (("FONDKAPREMONT_MODE", _FONDKAPREMONT),
                                ("HOUSETYPE_MODE", _HOUSETYPE),
                                ("WALLSMATERIAL_MODE", _WALLSMATERIAL),
                                ("EMERGENCYSTATE_MODE", _EMERGENCYSTATE)):
        filled = present & (rng.random(n) < _BUILDING_FILLED[column])
        cols[column] = np.where(filled, draw.category(column, frequencies), -1).astype(np.int16)


def _negative_binomial(rng: np.random.Generator, n: int, shape: float, mean: float) -> np.ndarray:
    return rng.negative_binomial(shape, shape / (shape + mean), n).astype(float)


def _draw_history_counts(draw: _Draw, hidden: dict[str, np.ndarray]) -> None:
    """Draw the social circle counts, the documents provided and the credit bureau enquiries."""
    rng, n, cols = draw.rng, draw.n, draw.columns
    observed = np.where(rng.random(n) < 0.47, 1 + _negative_binomial(rng, n, 1.5, 2.0), 0.0)
    step_60 = np.where(rng.random(n) < 0.03, rng.choice([-1, 1], n), 0)
    observed_60 = np.maximum(observed + step_60, 0)
    default_rate = np.clip(0.1 * np.exp(-0.45 * hidden["creditworthiness"]), 0, 1)
    defaulted = rng.binomial(observed.astype(np.int64), default_rate).astype(float)
    defaulted_60 = rng.binomial(defaulted.astype(np.int64), 0.7).astype(float)
    no_circle = rng.random(n) < 0.0033
    for column, values in (("OBS_30_CNT_SOCIAL_CIRCLE", observed),
                           ("DEF_30_CNT_SOCIAL_CIRCLE", defaulted),
                           ("OBS_60_CNT_SOCIAL_CIRCLE", observed_60),
                           ("DEF_60_CNT_SOCIAL_CIRCLE", defaulted_60)):
        cols[column] = np.where(no_circle, np.nan, values)

    # One main document (3, 6 or 8, or none) and rare additional ones.
    main = rng.choice([3, 6, 8, 0], n, p=[0.71, 0.088, 0.081, 0.121])
    for number in range(2, 22):
        if number in (3, 6, 8):
            cols[f"FLAG_DOCUMENT_{number}"] = (main == number).astype(np.int64)
        else:
            cols[f"FLAG_DOCUMENT_{number}"] = draw.flag(_DOCUMENT_RATES[number])

    no_bureau = rng.random(n) < 0.135
    enquiries = {
        "HOUR": _negative_binomial(rng, n, 0.3, 0.006),
        "DAY": _negative_binomial(rng, n, 0.3, 0.007),
        "WEEK": _negative_binomial(rng, n, 0.5, 0.034),
        "MON": _negative_binomial(rng, n, 0.15, 0.27),
        "QRT": _negative_binomial(rng, n, 0.5, 0.27),
        "YEAR": _negative_binomial(rng, n, 1.6, 1.9 * np.exp(-0.15 * hidden["creditworthiness"])),
    }
    for period, values in enquiries.items():
        cols[f"AMT_REQ_CREDIT_BUREAU_{period}"] = np.where(no_bureau, np.nan, values)


def _default_log_odds(draw: _Draw, hidden: dict[str, np.ndarray]) -> np.ndarray:
    """Return the log-odds of default of each row (before the Bernoulli draw)."""
    cols = draw.columns
    log_odds = _INTERCEPT + _EFFECT_CREDITWORTHINESS * hidden["creditworthiness"]
    for column in _EFFECTS:
        log_odds = log_odds + _effect_table(column)[cols[column]]
    log_odds += -0.025 * (hidden["age"] - 40.0)
    log_odds += -0.06 * np.minimum(hidden["employed_years"], 15.0)
    annuity_to_income = np.nan_to_num(cols["AMT_ANNUITY"] / cols["AMT_INCOME_TOTAL"], nan=0.15)
    log_odds += 1.5 * (np.minimum(annuity_to_income, 0.6) - 0.15)
    credit_to_goods = np.nan_to_num(cols["AMT_CREDIT"] / cols["AMT_GOODS_PRICE"], nan=1.0)
    log_odds += 1.2 * (np.minimum(credit_to_goods, 2.0) - 1.1)
    credit_to_income = cols["AMT_CREDIT"] / cols["AMT_INCOME_TOTAL"]
    log_odds += 0.12 * np.log(np.maximum(credit_to_income, 0.1) / 3.3)
    log_odds += 0.35 * (cols["REGION_RATING_CLIENT"] - 2)
    log_odds += 0.15 * (cols["REGION_RATING_CLIENT_W_CITY"] - 2)
    log_odds += -0.15 * cols["FLAG_OWN_CAR"] + 0.06 * cols["CNT_CHILDREN"]
    log_odds += 0.25 * cols["REG_CITY_NOT_LIVE_CITY"] + 0.15 * cols["REG_CITY_NOT_WORK_CITY"]
    log_odds += 0.1 * cols["FLAG_WORK_PHONE"] - 0.1 * cols["FLAG_PHONE"]
    log_odds += 0.25 * np.nan_to_num(cols["DEF_30_CNT_SOCIAL_CIRCLE"])
    log_odds += 0.2 * (cols["DAYS_LAST_PHONE_CHANGE"] > -300)
    log_odds += 0.15 * (cols["DAYS_ID_PUBLISH"] > -5 * 365) + 0.15 * cols["FLAG_DOCUMENT_3"]
    return log_odds


def draw_chunk(rng: np.random.Generator, rows: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Draw ``rows`` applications and return their columns (without ID) and default labels.

    Category columns are int16 codes into ``schema.CATEGORIES``, with -1 for missing. The yes/no
    flags ``FLAG_OWN_CAR`` and ``FLAG_OWN_REALTY`` are codes too (0 = 'N', 1 = 'Y').
    """
    draw = _Draw(rng, rows)
    hidden = _draw_person(draw)
    hidden.update(_draw_employment(draw, hidden["age"]))
    hidden["creditworthiness"] = rng.standard_normal(rows)
    _draw_loan(draw, hidden)
    _draw_region_and_process(draw, hidden)
    _draw_external_scores(draw, hidden)
    _draw_building(draw)
    _draw_history_counts(draw, hidden)
    log_odds = _default_log_odds(draw, hidden)
    target = (rng.random(rows) < 1.0 / (1.0 + np.exp(-log_odds))).astype(np.int64)
    return draw.columns, target


# ---------------------------------------------------------------------------------------------
# Drift injection
# ---------------------------------------------------------------------------------------------


def parse_shift(text: str) -> tuple[tuple[str, str], float]:
    """Parse a ``--shift`` argument ``COLUMN:MONTH:FACTOR`` into ``((column, month), factor)``.

    ``COLUMN`` may be ``NAME=VALUE`` for a category column; it is split from the right, so a
    value containing a colon (``ORGANIZATION_TYPE=Industry: type 1``) parses.
    """
    parts = text.rsplit(":", 2)
    if len(parts) != 3 or not parts[0]:
        raise CreditflowError(
            f"invalid --shift {text!r}: expected COLUMN:MONTH:FACTOR, e.g. {_SHIFT_EXAMPLE}")
    column, month_text, factor_text = (part.strip() for part in parts)
    try:
        month = parse_month(month_text)
    except ValueError as error:
        raise CreditflowError(f"invalid --shift {text!r}: {error}") from None
    try:
        factor = float(factor_text)
    except ValueError:
        raise CreditflowError(
            f"invalid --shift {text!r}: factor {factor_text!r} is not a number; "
            f"expected COLUMN:MONTH:FACTOR, e.g. {_SHIFT_EXAMPLE}") from None
    return (column, month), factor


def _validate_shifts(shifts: Shifts, months: Sequence[str]) -> dict[str, list[_MonthShift]]:
    """Check every shift and return them by month as ``(column, category value, factor)``."""
    by_month: dict[str, list[_MonthShift]] = {}
    for (column_text, month), factor in shifts.items():
        where = f"shift {column_text}:{month}:{factor}"
        column, _, value = column_text.partition("=")
        column = column.strip()
        if column not in schema.COLUMNS_BY_NAME:
            raise CreditflowError(
                f"invalid {where}: unknown column {column!r}; use one of the applicant columns "
                f"of the contract, e.g. AMT_INCOME_TOTAL, DAYS_BIRTH, EXT_SOURCE_2")
        if column in (schema.ID_COLUMN, schema.TARGET_COLUMN):
            raise CreditflowError(
                f"invalid {where}: {column} is not an applicant column; shift a feature such "
                "as AMT_INCOME_TOTAL instead")
        if month not in months:
            raise CreditflowError(
                f"invalid {where}: month {month!r} is not generated; generated months are "
                f"{', '.join(months)}")
        if not math.isfinite(factor) or factor < 0:
            raise CreditflowError(f"invalid {where}: factor must be a finite number >= 0")
        if column in schema.CATEGORIES:
            if not value:
                raise CreditflowError(
                    f"invalid {where}: {column} is a category column; name the value whose share "
                    f"to multiply, e.g. {column}={schema.CATEGORIES[column][0]}:{month}:{factor}")
            if value not in schema.CATEGORIES[column]:
                raise CreditflowError(
                    f"invalid {where}: {value!r} is not a value of {column}; accepted values: "
                    f"{', '.join(schema.CATEGORIES[column])}")
        elif value:
            raise CreditflowError(
                f"invalid {where}: {column} is numeric; drop '={value}' to multiply its values")
        by_month.setdefault(month, []).append((column, value or None, factor))
    return by_month


def _shift_numeric(values: np.ndarray, column: str, factor: float) -> np.ndarray:
    """Multiply a numeric column, keep the DAYS_EMPLOYED sentinel, clip to the contract range."""
    spec = schema.COLUMNS_BY_NAME[column]
    shifted = values * factor
    if column == "DAYS_EMPLOYED":
        sentinel = values == schema.DAYS_EMPLOYED_NOT_EMPLOYED
        shifted = np.where(sentinel, values, np.minimum(shifted, 0))
    if spec.min_value is not None or spec.max_value is not None:
        shifted = np.clip(shifted, spec.min_value, spec.max_value)
    if spec.dtype == "int":
        return np.round(shifted).astype(np.int64)
    return shifted


def _shift_category(rng: np.random.Generator, codes: np.ndarray, column: str, value: str,
                    factor: float) -> np.ndarray:
    """Multiply the share of ``value`` among the filled rows of ``column`` by ``factor``.

    A factor above 1 turns other filled rows into ``value``, up to a share of 1. A factor below 1
    turns a share ``1 - factor`` of the ``value`` rows into values drawn from the other filled
    rows, or from the other accepted values when no other row is filled.
    """
    code = schema.CATEGORIES[column].index(value)
    filled = codes >= 0
    is_value = codes == code
    others = np.flatnonzero(filled & ~is_value)
    share = is_value.sum() / max(filled.sum(), 1)
    result = codes.copy()
    if factor >= 1:
        if share == 0 or others.size == 0:
            return result
        convert = (min(1.0, share * factor) - share) / (1.0 - share)
        result[others[rng.random(others.size) < convert]] = code
        return result
    rows = np.flatnonzero(is_value)
    chosen = rows[rng.random(rows.size) < 1.0 - factor]
    if others.size:
        replacements = codes[others[rng.integers(0, others.size, chosen.size)]]
    else:
        alternatives = np.array([c for c in range(len(schema.CATEGORIES[column])) if c != code])
        replacements = alternatives[rng.integers(0, alternatives.size, chosen.size)]
    result[chosen] = replacements.astype(codes.dtype)
    return result


def _apply_shifts(rng: np.random.Generator, columns: dict[str, np.ndarray],
                  shifts: list[_MonthShift]) -> None:
    for column, value, factor in shifts:
        if value is None:
            columns[column] = _shift_numeric(columns[column], column, factor)
        else:
            columns[column] = _shift_category(rng, columns[column], column, value, factor)


# ---------------------------------------------------------------------------------------------
# Writing CSV
# ---------------------------------------------------------------------------------------------


def _csv_field(value: str) -> str:
    """Quote a text value for CSV when it contains a delimiter or a quote (RFC 4180)."""
    if any(character in value for character in ',"\n\r'):
        return '"' + value.replace('"', '""') + '"'
    return value


# Category dictionaries with their CSV text, quoted where needed ("Spouse, partner").
_CSV_CATEGORIES = {
    column: pa.array([_csv_field(value) for value in values], type=pa.string())
    for column, values in schema.CATEGORIES.items()
}


def _text_of(column: str, values: np.ndarray) -> pa.Array:
    """Return the CSV text of one column as an Arrow string array, null where missing."""
    spec = schema.COLUMNS_BY_NAME[column]
    if spec.dtype == "str":
        codes = values.astype(np.int32)
        indices = pa.array(codes, mask=codes < 0, type=pa.int32())
        return pa.DictionaryArray.from_arrays(indices, _CSV_CATEGORIES[column]).cast(pa.string())
    if spec.dtype == "int":
        return pa.array(values, type=pa.int64()).cast(pa.string())
    # Floats are written like the public file: whole numbers keep '.0' (2.0, -3648.0). Arrow
    # writes whole numbers from 1e10 up in exponent form, so the suffix stops below that.
    values = values + 0.0  # -0.0 becomes 0.0
    text = pa.array(values, type=pa.float64(), from_pandas=True).cast(pa.string())
    with np.errstate(invalid="ignore"):
        whole = (values == np.trunc(values)) & (np.abs(values) < 1e9)
    if not whole.any():
        return text
    return pc.if_else(pa.array(whole), pc.binary_join_element_wise(text, ".0", ""), text)


def _csv_bytes(names: Sequence[str], columns: dict[str, np.ndarray]) -> bytes:
    """Format one chunk as CSV lines (no header), ending with a newline."""
    texts = [_text_of(name, columns[name]) for name in names]
    lines = pc.binary_join_element_wise(*texts, ",", null_handling="replace",
                                        null_replacement="")
    lines = pc.binary_join_element_wise(lines, "\n", "")
    _, offset_buffer, data = lines.buffers()
    offsets = np.frombuffer(offset_buffer, dtype=np.int32)
    start, end = offsets[lines.offset], offsets[lines.offset + len(lines)]
    return data.to_pybytes()[start:end]


def _file_key(month: str) -> int:
    """Return the number that seeds a file's random streams: 0 for history, else YYYYMM."""
    return 0 if month == HISTORY else int(month.replace("-", ""))


def _write_file(path: Path, month: str, rows: int, first_id: int, seed: int, labeled: bool,
                shifts: list[_MonthShift], chunk_rows: int,
                progress: ProgressCallback | None) -> None:
    """Write one file chunk by chunk to a temporary name, then move it into place."""
    names = [name for name in schema.COLUMN_NAMES if labeled or name != schema.TARGET_COLUMN]
    partial = path.with_name(path.name + ".partial")
    key = _file_key(month)
    try:
        with partial.open("wb") as handle:
            handle.write((",".join(names) + "\n").encode("ascii"))
            for index, start in enumerate(range(0, rows, chunk_rows)):
                count = min(chunk_rows, rows - start)
                rng = np.random.default_rng(np.random.SeedSequence([seed, key, index]))
                columns, target = draw_chunk(rng, count)
                if shifts:
                    # A separate stream, so the shift leaves every other column as it was.
                    shift_seed = np.random.SeedSequence([seed, key, index, 1])
                    _apply_shifts(np.random.default_rng(shift_seed), columns, shifts)
                columns[schema.ID_COLUMN] = np.arange(first_id + start, first_id + start + count,
                                                      dtype=np.int64)
                columns[schema.TARGET_COLUMN] = target
                handle.write(_csv_bytes(names, columns))
                if progress is not None:
                    progress(count)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def generate_files(
    out_dir: str | os.PathLike,
    months: list[str],
    history_rows: int,
    rows_per_month: int,
    seed: int,
    shifts: Shifts | None = None,
    labeled: bool = True,
    *,
    chunk_rows: int = CHUNK_ROWS,
    first_id: int = FIRST_ID,
    progress: ProgressCallback | None = None,
) -> list[Path]:
    """Write ``initial.csv`` and one ``YYYYMMDD.csv`` per month to ``out_dir`` and return the paths.

    ``initial.csv`` (skipped when ``history_rows`` is 0) is always labeled, and the monthly files
    leave ``TARGET`` out when ``labeled`` is false. ``SK_ID_CURR`` counts up from ``first_id``
    through all files of the call, so no ID repeats. Files generated by a separate call need a
    ``first_id`` above the IDs already loaded, because the gate rejects an ID seen in another
    month.

    ``shifts`` maps ``(column, month)`` to a factor that multiplies the column's values in that
    month. The result is clipped to the contract range, and the ``DAYS_EMPLOYED`` sentinel stays
    as it is. A key ``(COLUMN=VALUE, month)`` multiplies the share of a category value instead
    (see :func:`_shift_category`). A shift changes the values after ``TARGET`` is drawn, so it
    also weakens the column's relation to the label, as a change in how a field is recorded
    would.

    ``progress`` is called with the number of rows written after each chunk.
    """
    month_list = [parse_month(month) for month in months]
    if HISTORY in month_list:
        raise CreditflowError("months must be calendar months (YYYY-MM); the history file is "
                              "initial.csv, sized by history_rows")
    if len(set(month_list)) != len(month_list):
        raise CreditflowError(f"months repeat in {', '.join(month_list)}: give each month once")
    if history_rows < 0 or rows_per_month < 1:
        raise CreditflowError(
            f"invalid row counts (history {history_rows}, per month {rows_per_month}): the history "
            "takes 0 or more rows and each month at least 1")
    if seed < 0:
        raise CreditflowError(f"invalid seed {seed}: use an integer >= 0")
    if chunk_rows < 1:
        raise CreditflowError(f"invalid chunk size {chunk_rows}: use at least 1 row")
    if first_id < 1:
        raise CreditflowError(f"invalid first SK_ID_CURR {first_id}: use an integer >= 1")
    files = ([(HISTORY, history_rows, True)] if history_rows else [])
    files += [(month, rows_per_month, labeled) for month in month_list]
    shifts_by_month = _validate_shifts(shifts or {}, [month for month, _, _ in files])

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for month, rows, file_labeled in files:
        path = out / monthly_file_name(month)
        started = time.perf_counter()
        _write_file(path, month, rows, first_id, seed, file_labeled,
                    shifts_by_month.get(month, []), chunk_rows, progress)
        logger.info("wrote %s: %d rows (%s, %s) in %.1f s", path, rows, month,
                    "labeled" if file_labeled else "unlabeled", time.perf_counter() - started)
        first_id += rows
        paths.append(path)
    return paths


def command_generate(args, settings) -> int:
    """Run ``creditflow generate``: write the files and print their paths."""
    from tqdm import tqdm

    first, separator, last = args.months.partition(":")
    if not separator:
        first = last = args.months
    try:
        months = month_range(first, last)
    except ValueError as error:
        raise CreditflowError(
            f"invalid --months {args.months!r}: {error}; expected FIRST:LAST, e.g. "
            "2020-10:2021-01") from None
    shifts: Shifts = {}
    for text in args.shift:
        key, factor = parse_shift(text)
        shifts[key] = factor
    total = args.history_rows + args.rows_per_month * len(months)
    with tqdm(total=total, unit="rows", desc="generate", unit_scale=True) as bar:
        paths = generate_files(args.out, months, args.history_rows, args.rows_per_month,
                               args.seed, shifts=shifts, labeled=not args.unlabeled,
                               first_id=args.first_id, progress=bar.update)
    for path in paths:
        print(path)
    return 0
