"""Data profile: statistics computed by DuckDB against pandas, the page and the CLI."""

from __future__ import annotations

import base64
import re

import numpy as np
import pandas as pd
import pytest

from flows.cli import main
from flows.errors import CreditflowError
from flows.ingest import ingest_file
from flows.profile import profile_file, write_profile
from flows.schema import COLUMN_NAMES

IMAGE = re.compile(r'<img alt="([^"]*)" src="data:image/png;base64,([A-Za-z0-9+/=]+)">')


@pytest.fixture(scope="module")
def history(real_files):
    return real_files[0]


@pytest.fixture(scope="module")
def history_frame(history) -> pd.DataFrame:
    return pd.read_csv(history, keep_default_na=True)


@pytest.fixture(scope="module")
def profiles(history):
    return {p.name: p for p in profile_file(history)}


def test_profile_covers_every_column(profiles):
    assert list(profiles) == COLUMN_NAMES
    assert {p.rows for p in profiles.values()} == {2999}


def test_profile_missing_and_distinct_match_pandas(profiles, history_frame):
    for name, profile in profiles.items():
        assert profile.missing == int(history_frame[name].isna().sum()), name
        assert profile.distinct == int(history_frame[name].nunique()), name


def test_profile_numeric_statistics_match_pandas(profiles, history_frame):
    for name in ("AMT_CREDIT", "EXT_SOURCE_1", "DAYS_BIRTH", "CNT_CHILDREN"):
        values = history_frame[name].dropna().astype("float64")
        stats = profiles[name].stats
        assert stats["mean"] == pytest.approx(values.mean(), rel=1e-12), name
        assert stats["std"] == pytest.approx(values.std(), rel=1e-9), name
        assert stats["min"] == values.min(), name
        assert stats["max"] == values.max(), name
        assert stats["median"] == pytest.approx(values.median(), rel=1e-12), name
        assert stats["p25"] == pytest.approx(np.quantile(values, 0.25), rel=1e-12), name


def test_profile_histogram_counts_all_values(profiles, history_frame):
    for name in ("AMT_CREDIT", "EXT_SOURCE_1"):
        histogram = profiles[name].histogram
        assert len(histogram) == 20
        assert sum(count for _, _, count in histogram) == history_frame[name].notna().sum()
        assert histogram[0][0] == history_frame[name].min()
        assert histogram[-1][1] == pytest.approx(history_frame[name].max())


def test_profile_top_values_match_pandas(profiles, history_frame):
    counts = history_frame["ORGANIZATION_TYPE"].value_counts()
    top = profiles["ORGANIZATION_TYPE"].top_values
    assert len(top) == 15
    assert top[:3] == [(value, int(count)) for value, count in counts.head(3).items()]
    missing = dict(profiles["OCCUPATION_TYPE"].top_values).get("(missing)")
    assert missing == int(history_frame["OCCUPATION_TYPE"].isna().sum())


def test_profile_page_has_charts(settings, history):
    path = write_profile(settings, file=history)
    assert path == settings.reports / "profile_initial.html"
    document = path.read_text(encoding="utf-8")
    images = dict(IMAGE.findall(document))
    assert len(images) == 122
    for alt in ("histogram of AMT_CREDIT", "most frequent values of CODE_GENDER"):
        assert base64.b64decode(images[alt], validate=True)[:8] == b"\x89PNG\r\n\x1a\n"
    assert document.count("<h3 ") == 122


def test_profile_month_from_warehouse(settings, real_files, tmp_path, capsys):
    assert ingest_file(settings, real_files[1]).accepted
    out = tmp_path / "october.html"
    assert main(["--home", str(settings.home), "profile", "--month", "2020-10",
                 "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    document = out.read_text(encoding="utf-8")
    assert "month 2020-10" in document
    assert "1000 rows, 122 columns" in document


def test_profile_needs_file_or_month(settings, history):
    with pytest.raises(CreditflowError, match="FILE or --month"):
        write_profile(settings)
    with pytest.raises(CreditflowError, match="FILE or --month"):
        write_profile(settings, file=history, month="2020-10")


def test_profile_errors_name_the_input(settings, tmp_path):
    with pytest.raises(CreditflowError, match="file not found"):
        write_profile(settings, file=tmp_path / "absent.csv")
    text = tmp_path / "notes.txt"
    text.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(CreditflowError, match="expected a .csv or .parquet file"):
        write_profile(settings, file=text)
    with pytest.raises(CreditflowError, match="has no applications yet|does not exist"):
        write_profile(settings, month="2020-10")


def test_profile_gzip_file_rejected(settings, tmp_path, capsys):
    import gzip

    packed = tmp_path / "20210101.csv"
    packed.write_bytes(gzip.compress(b"SK_ID_CURR,TARGET\n100002,0\n"))

    assert main(["profile", str(packed)]) == 2
    error = capsys.readouterr().err
    assert f"cannot profile {packed}: the file is a gzip archive, not CSV text" in error
    assert "Extract the CSV file" in error


def test_profile_latin1_file_rejected(settings, tmp_path, capsys):
    latin1 = tmp_path / "20210101.csv"
    latin1.write_bytes("SK_ID_CURR,NAME_TYPE_SUITE\n100002,Unaccompanied\n100003,Fianc\xe9\n"
                       .encode("latin-1"))

    assert main(["profile", str(latin1)]) == 2
    error = capsys.readouterr().err
    assert f"cannot profile {latin1}: the file is not UTF-8" in error
    assert "on line 3" in error
    assert "Save the file as UTF-8" in error
