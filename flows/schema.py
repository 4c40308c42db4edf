"""Column contract of the Home Credit application file.

The names, types and accepted category values below are the contract every incoming file is
read with; nothing is inferred from the data. Category values are those of the public Home
Credit ``application_train.csv``; a value outside them is reported as a warning, not a failure.
"""

from __future__ import annotations

from dataclasses import dataclass

ID_COLUMN = "SK_ID_CURR"
TARGET_COLUMN = "TARGET"

# Sentinels that mean "missing" rather than a real value.
DAYS_EMPLOYED_NOT_EMPLOYED = 365243
MISSING_CATEGORY = "XNA"

CATEGORIES: dict[str, list[str]] = {
    "NAME_CONTRACT_TYPE": ["Cash loans", "Revolving loans"],
    "CODE_GENDER": ["F", "M", "XNA"],
    "FLAG_OWN_CAR": ["N", "Y"],
    "FLAG_OWN_REALTY": ["N", "Y"],
    "NAME_TYPE_SUITE": [
        "Children", "Family", "Group of people", "Other_A", "Other_B", "Spouse, partner",
        "Unaccompanied",
    ],
    "NAME_INCOME_TYPE": [
        "Businessman", "Commercial associate", "Maternity leave", "Pensioner", "State servant",
        "Student", "Unemployed", "Working",
    ],
    "NAME_EDUCATION_TYPE": [
        "Academic degree", "Higher education", "Incomplete higher", "Lower secondary",
        "Secondary / secondary special",
    ],
    "NAME_FAMILY_STATUS": [
        "Civil marriage", "Married", "Separated", "Single / not married", "Unknown", "Widow",
    ],
    "NAME_HOUSING_TYPE": [
        "Co-op apartment", "House / apartment", "Municipal apartment", "Office apartment",
        "Rented apartment", "With parents",
    ],
    "OCCUPATION_TYPE": [
        "Accountants", "Cleaning staff", "Cooking staff", "Core staff", "Drivers", "HR staff",
        "High skill tech staff", "IT staff", "Laborers", "Low-skill Laborers", "Managers",
        "Medicine staff", "Private service staff", "Realty agents", "Sales staff", "Secretaries",
        "Security staff", "Waiters/barmen staff",
    ],
    "WEEKDAY_APPR_PROCESS_START": [
        "FRIDAY", "MONDAY", "SATURDAY", "SUNDAY", "THURSDAY", "TUESDAY", "WEDNESDAY",
    ],
    "ORGANIZATION_TYPE": [
        "Advertising", "Agriculture", "Bank", "Business Entity Type 1", "Business Entity Type 2",
        "Business Entity Type 3", "Cleaning", "Construction", "Culture", "Electricity",
        "Emergency", "Government", "Hotel", "Housing",
        *[f"Industry: type {i}" for i in range(1, 14)],
        "Insurance", "Kindergarten", "Legal Services", "Medicine", "Military", "Mobile", "Other",
        "Police", "Postal", "Realtor", "Religion", "Restaurant", "School", "Security",
        "Security Ministries", "Self-employed", "Services", "Telecom",
        *[f"Trade: type {i}" for i in range(1, 8)],
        *[f"Transport: type {i}" for i in range(1, 5)],
        "University", "XNA",
    ],
    "FONDKAPREMONT_MODE": [
        "not specified", "org spec account", "reg oper account", "reg oper spec account",
    ],
    "HOUSETYPE_MODE": ["block of flats", "specific housing", "terraced house"],
    "WALLSMATERIAL_MODE": [
        "Block", "Mixed", "Monolithic", "Others", "Panel", "Stone, brick", "Wooden",
    ],
    "EMERGENCYSTATE_MODE": ["No", "Yes"],
}

_BUILDING_STEMS = [
    "APARTMENTS", "BASEMENTAREA", "YEARS_BEGINEXPLUATATION", "YEARS_BUILD", "COMMONAREA",
    "ELEVATORS", "ENTRANCES", "FLOORSMAX", "FLOORSMIN", "LANDAREA", "LIVINGAPARTMENTS",
    "LIVINGAREA", "NONLIVINGAPARTMENTS", "NONLIVINGAREA",
]
BUILDING_COLUMNS = [
    f"{stem}_{suffix}" for suffix in ("AVG", "MODE", "MEDI") for stem in _BUILDING_STEMS
] + ["TOTALAREA_MODE"]
DOCUMENT_FLAGS = [f"FLAG_DOCUMENT_{i}" for i in range(2, 22)]
CONTACT_FLAGS = [
    "FLAG_MOBIL", "FLAG_EMP_PHONE", "FLAG_WORK_PHONE", "FLAG_CONT_MOBILE", "FLAG_PHONE",
    "FLAG_EMAIL",
]
ADDRESS_FLAGS = [
    "REG_REGION_NOT_LIVE_REGION", "REG_REGION_NOT_WORK_REGION", "LIVE_REGION_NOT_WORK_REGION",
    "REG_CITY_NOT_LIVE_CITY", "REG_CITY_NOT_WORK_CITY", "LIVE_CITY_NOT_WORK_CITY",
]
CREDIT_BUREAU_COLUMNS = [
    f"AMT_REQ_CREDIT_BUREAU_{p}" for p in ("HOUR", "DAY", "WEEK", "MON", "QRT", "YEAR")
]
SOCIAL_CIRCLE_COLUMNS = [
    "OBS_30_CNT_SOCIAL_CIRCLE", "DEF_30_CNT_SOCIAL_CIRCLE",
    "OBS_60_CNT_SOCIAL_CIRCLE", "DEF_60_CNT_SOCIAL_CIRCLE",
]
EXT_SOURCE_COLUMNS = ["EXT_SOURCE_1", "EXT_SOURCE_2", "EXT_SOURCE_3"]


@dataclass(frozen=True)
class Column:
    """One column of the application file: its name, type and plausible range."""

    name: str
    dtype: str  # "int", "float" or "str"
    nullable: bool = True
    min_value: float | None = None
    max_value: float | None = None

    @property
    def sql_type(self) -> str:
        return {"int": "BIGINT", "float": "DOUBLE", "str": "VARCHAR"}[self.dtype]


def _build_columns() -> list[Column]:
    # File order of the public application_train.csv.
    order = [
        ("SK_ID_CURR", "int", False, 0, None),
        ("TARGET", "int", True, 0, 1),
        ("NAME_CONTRACT_TYPE", "str"), ("CODE_GENDER", "str"), ("FLAG_OWN_CAR", "str"),
        ("FLAG_OWN_REALTY", "str"),
        ("CNT_CHILDREN", "int", True, 0, 30),
        ("AMT_INCOME_TOTAL", "float", True, 0, None),
        ("AMT_CREDIT", "float", True, 0, None),
        ("AMT_ANNUITY", "float", True, 0, None),
        ("AMT_GOODS_PRICE", "float", True, 0, None),
        ("NAME_TYPE_SUITE", "str"), ("NAME_INCOME_TYPE", "str"), ("NAME_EDUCATION_TYPE", "str"),
        ("NAME_FAMILY_STATUS", "str"), ("NAME_HOUSING_TYPE", "str"),
        ("REGION_POPULATION_RELATIVE", "float", True, 0, 1),
        # Ages between 18 and 100 years, counted in days before the application.
        ("DAYS_BIRTH", "int", True, -36525, -6570),
        # Non-positive, or the sentinel 365243 for applicants without employment.
        ("DAYS_EMPLOYED", "int", True, -36525, DAYS_EMPLOYED_NOT_EMPLOYED),
        ("DAYS_REGISTRATION", "float", True, -36525, 0),
        ("DAYS_ID_PUBLISH", "int", True, -36525, 0),
        ("OWN_CAR_AGE", "float", True, 0, 100),
        *[(name, "int", True, 0, 1) for name in CONTACT_FLAGS],
        ("OCCUPATION_TYPE", "str"),
        ("CNT_FAM_MEMBERS", "float", True, 0, 40),
        ("REGION_RATING_CLIENT", "int", True, 1, 3),
        ("REGION_RATING_CLIENT_W_CITY", "int", True, 1, 3),
        ("WEEKDAY_APPR_PROCESS_START", "str"),
        ("HOUR_APPR_PROCESS_START", "int", True, 0, 23),
        *[(name, "int", True, 0, 1) for name in ADDRESS_FLAGS],
        ("ORGANIZATION_TYPE", "str"),
        *[(name, "float", True, 0, 1) for name in EXT_SOURCE_COLUMNS],
        *[(name, "float", True, 0, 1) for name in BUILDING_COLUMNS[:-1]],
        ("FONDKAPREMONT_MODE", "str"), ("HOUSETYPE_MODE", "str"),
        ("TOTALAREA_MODE", "float", True, 0, 1),
        ("WALLSMATERIAL_MODE", "str"), ("EMERGENCYSTATE_MODE", "str"),
        *[(name, "float", True, 0, None) for name in SOCIAL_CIRCLE_COLUMNS],
        ("DAYS_LAST_PHONE_CHANGE", "float", True, -36525, 0),
        *[(name, "int", True, 0, 1) for name in DOCUMENT_FLAGS],
        *[(name, "float", True, 0, None) for name in CREDIT_BUREAU_COLUMNS],
    ]
    columns = []
    for spec in order:
        name, dtype, *rest = spec
        nullable, low, high = (*rest, True, None, None)[:3]
        columns.append(Column(name, dtype, nullable, low, high))
    return columns


COLUMNS: list[Column] = _build_columns()
COLUMN_NAMES: list[str] = [c.name for c in COLUMNS]
COLUMNS_BY_NAME: dict[str, Column] = {c.name: c for c in COLUMNS}
APPLICANT_COLUMNS: list[str] = [n for n in COLUMN_NAMES if n not in (ID_COLUMN, TARGET_COLUMN)]


def snake_case(name: str) -> str:
    """Return the warehouse name of a file column (``AMT_CREDIT`` -> ``amt_credit``)."""
    return name.lower()
