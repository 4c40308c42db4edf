import pytest

from flows.months import month_from_filename, month_range, month_sort_key, parse_month


def test_month_from_business_file_names():
    assert month_from_filename("20210101.csv") == "2021-01"
    assert month_from_filename("/inbox/20201001.CSV") == "2020-10"
    assert month_from_filename("initial.csv") == "history"


@pytest.mark.parametrize(
    "name", ["applications.csv", "20211301.csv", "2021-01.csv", "20210132.csv"]
)
def test_month_from_unknown_file_name_is_rejected(name):
    with pytest.raises(ValueError, match="--month YYYY-MM"):
        month_from_filename(name)


def test_month_range_crosses_year():
    assert month_range("2020-11", "2021-02") == ["2020-11", "2020-12", "2021-01", "2021-02"]


def test_month_range_rejects_reversed_bounds():
    with pytest.raises(ValueError, match="comes after"):
        month_range("2021-02", "2020-11")


def test_history_sorts_first():
    assert sorted(["2021-01", "history", "2020-10"], key=month_sort_key)[0] == "history"


@pytest.mark.parametrize("text", ["2021-13", "202101", "Jan 2021", ""])
def test_parse_month_rejects_invalid(text):
    with pytest.raises(ValueError, match="expected YYYY-MM"):
        parse_month(text)
