import csv

from flows import schema
from tests.conftest import REAL_SAMPLE


def test_contract_has_all_columns():
    assert len(schema.COLUMNS) == 122
    assert len(set(schema.COLUMN_NAMES)) == 122


def test_every_text_column_has_categories():
    text_columns = {c.name for c in schema.COLUMNS if c.dtype == "str"}
    assert text_columns == set(schema.CATEGORIES)


def test_contract_matches_real_file_header():
    with REAL_SAMPLE.open(newline="") as handle:
        header = next(csv.reader(handle))
    assert header == schema.COLUMN_NAMES
