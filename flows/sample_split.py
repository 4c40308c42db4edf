"""Split the real Home Credit sample into the files the business sends, in file order.

The labeled sample has 6,999 rows. The business names its files ``initial.csv`` (history) and
``YYYYMMDD.csv`` (one per month), so the first 2,999 rows become history and each following
1,000 rows one month from 2020-10 to 2021-01. The tests and the model-quality benchmark use this
one split, so their figures refer to the same months.
"""

from __future__ import annotations

import csv
from pathlib import Path

# File name and row count of each file, in the order the rows appear in the sample.
REAL_SPLIT: list[tuple[str, int]] = [
    ("initial.csv", 2999),
    ("20201001.csv", 1000),
    ("20201101.csv", 1000),
    ("20201201.csv", 1000),
    ("20210101.csv", 1000),
]
# The calendar months of the monthly files above, in the same order.
REAL_MONTHS: list[str] = ["2020-10", "2020-11", "2020-12", "2021-01"]


def split_sample(sample: Path, out_dir: Path) -> list[Path]:
    """Write ``sample`` as initial.csv and the monthly files; return their paths in file order.

    Raises ValueError naming the sample when it has fewer rows than the split needs.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    with sample.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        for name, count in REAL_SPLIT:
            path = out_dir / name
            with path.open("w", newline="", encoding="utf-8") as out:
                writer = csv.writer(out)
                writer.writerow(header)
                for written in range(count):
                    row = next(reader, None)
                    if row is None:
                        raise ValueError(
                            f"{sample} ended after {written} rows of {name} (needs {count}): "
                            f"pass the full labeled sample of "
                            f"{sum(c for _, c in REAL_SPLIT)} rows")
                    writer.writerow(row)
            paths.append(path)
    return paths
