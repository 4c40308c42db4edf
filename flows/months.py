"""Month labels: ``YYYY-MM`` for a monthly file, ``history`` for the initial file."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

HISTORY = "history"
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_MONTHLY_FILE = re.compile(r"^(\d{4})(\d{2})(\d{2})\.(csv|parquet)$", re.IGNORECASE)
_HISTORY_FILE = re.compile(r"^initial\.(csv|parquet)$", re.IGNORECASE)


def parse_month(text: str) -> str:
    """Validate a month given by a user and return it as ``YYYY-MM`` (or ``history``)."""
    value = text.strip()
    if value.lower() == HISTORY:
        return HISTORY
    match = _MONTH.match(value)
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise ValueError(f"invalid month {text!r}: expected YYYY-MM (e.g. 2021-01) or 'history'")
    return value


def month_from_filename(path: str | Path) -> str:
    """Return the month of a business file name: ``YYYYMMDD.csv`` or ``initial.csv``."""
    name = Path(path).name
    if _HISTORY_FILE.match(name):
        return HISTORY
    match = _MONTHLY_FILE.match(name)
    if match:
        year, month, day = (int(g) for g in match.groups()[:3])
        try:
            date(year, month, day)
        except ValueError:
            pass
        else:
            return f"{year:04d}-{month:02d}"
    raise ValueError(
        f"cannot tell the month of {name!r}: name monthly files YYYYMMDD.csv (e.g. 20210101.csv) "
        "and the history file initial.csv, or pass --month YYYY-MM"
    )


def month_sort_key(month: str) -> str:
    """Sort key that puts history before every calendar month."""
    return "0000-00" if month == HISTORY else month


def month_range(first: str, last: str) -> list[str]:
    """Return every month from ``first`` to ``last`` inclusive."""
    start, end = parse_month(first), parse_month(last)
    if HISTORY in (start, end):
        raise ValueError("a month range takes calendar months (YYYY-MM), not 'history'")
    year, month = (int(p) for p in start.split("-"))
    months = []
    while f"{year:04d}-{month:02d}" <= end:
        months.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    if not months:
        raise ValueError(
            f"empty month range {first} to {last}: the first month comes after the last"
        )
    return months


def previous_month(month: str) -> str:
    year, mon = (int(p) for p in parse_month(month).split("-"))
    return f"{year - 1:04d}-12" if mon == 1 else f"{year:04d}-{mon - 1:02d}"


def monthly_file_name(month: str) -> str:
    """Return the business's file name of a month: ``2021-01`` -> ``20210101.csv``."""
    if month == HISTORY:
        return "initial.csv"
    return month.replace("-", "") + "01.csv"
