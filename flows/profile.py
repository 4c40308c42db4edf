"""Data profile of an application file or a stored month: ``creditflow profile FILE|--month M``.

Per column: type, missing share, distinct count, summary statistics, and a histogram (numbers)
or a bar chart of the most frequent values (text). DuckDB computes everything in three queries
over the whole data (statistics, histogram bins, value counts), so a month of 307,511 rows
needs no pass of pandas per column.
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pandas as pd

from flows import charts
from flows.config import Settings
from flows.errors import CreditflowError
from flows.gate_read import _compressed_format, check_utf8
from flows.months import parse_month
from flows.schema import COLUMNS_BY_NAME
from flows.warehouse import DUCKDB, connect, describe, table_exists, warehouse_exists

logger = logging.getLogger(__name__)

HISTOGRAM_BINS = 20
TOP_VALUES = 15
_NUMERIC_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
                  "UINTEGER", "UBIGINT", "FLOAT", "DOUBLE", "REAL")


@dataclass
class ColumnProfile:
    """Statistics of one column."""

    name: str
    sql_type: str
    rows: int
    missing: int
    distinct: int
    stats: dict[str, float | None] = field(default_factory=dict)
    # numeric: (lower edge, upper edge, count) per bin; text: (value, count), most frequent first
    histogram: list[tuple[float, float, int]] = field(default_factory=list)
    top_values: list[tuple[str, int]] = field(default_factory=list)

    @property
    def is_numeric(self) -> bool:
        return self.sql_type.upper().startswith(_NUMERIC_TYPES) or self.sql_type.upper().startswith(
            "DECIMAL")

    @property
    def missing_share(self) -> float:
        return self.missing / self.rows if self.rows else 0.0


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _columns(connection: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    described = connection.execute("describe select * from profiled").fetchall()
    return [(row[0], str(row[1])) for row in described]


def profile_relation(connection: duckdb.DuckDBPyConnection) -> list[ColumnProfile]:
    """Profile the table ``profiled`` of ``connection``: one ColumnProfile per column."""
    connection.execute("set enable_progress_bar = false")
    columns = _columns(connection)
    if not columns:
        raise CreditflowError("nothing to profile: the data has no columns")
    numeric = {name for name, sql_type in columns
               if ColumnProfile(name, sql_type, 0, 0, 0).is_numeric}

    expressions = ["count(*) as total_rows"]
    for index, (name, _) in enumerate(columns):
        column = _quote(name)
        expressions += [f"count({column}) as c{index}_present",
                        f"count(distinct {column}) as c{index}_distinct"]
        if name in numeric:
            value = f"cast({column} as double)"
            expressions += [
                f"min({value}) as c{index}_min", f"max({value}) as c{index}_max",
                f"avg({value}) as c{index}_mean", f"stddev_samp({value}) as c{index}_std",
                # One sort serves the three quartiles when they are asked for as a list.
                f"quantile_cont({value}, [0.25, 0.5, 0.75]) as c{index}_quartiles",
            ]
    cursor = connection.execute(f"select {', '.join(expressions)} from profiled")
    names = [d[0] for d in cursor.description]
    summary = dict(zip(names, cursor.fetchall()[0], strict=True))
    total = int(summary["total_rows"])

    profiles = []
    for index, (name, sql_type) in enumerate(columns):
        present = int(summary[f"c{index}_present"])
        profile = ColumnProfile(name, sql_type, total, total - present,
                                int(summary[f"c{index}_distinct"]))
        if name in numeric:
            quartiles = summary[f"c{index}_quartiles"] or [None, None, None]
            profile.stats = {key: summary[f"c{index}_{key}"]
                             for key in ("min", "max", "mean", "std")}
            profile.stats.update(zip(("p25", "median", "p75"), quartiles, strict=True))
        profiles.append(profile)

    _add_histograms(connection, [p for p in profiles if p.is_numeric and p.missing < p.rows])
    _add_top_values(connection, [p for p in profiles if not p.is_numeric])
    return profiles


def _add_histograms(connection, profiles: list[ColumnProfile]) -> None:
    """Count each numeric column's values in HISTOGRAM_BINS equal-width bins, in one query."""
    if not profiles:
        return
    parts = []
    for index, profile in enumerate(profiles):
        low, high = profile.stats["min"], profile.stats["max"]
        width = (high - low) / HISTOGRAM_BINS if high > low else 1.0
        value = f"cast({_quote(profile.name)} as double)"
        parts.append(
            f"select {index} as column_index, least(cast(floor(({value} - {low!r}) / {width!r}) "
            f"as integer), {HISTOGRAM_BINS - 1}) as bin, count(*) as rows "
            f"from profiled where {value} is not null group by 2"
        )
    counts = connection.execute(" union all ".join(parts)).fetchall()
    by_column: dict[int, dict[int, int]] = {}
    for column_index, bin_index, rows in counts:
        by_column.setdefault(column_index, {})[bin_index] = rows
    for index, profile in enumerate(profiles):
        low, high = profile.stats["min"], profile.stats["max"]
        width = (high - low) / HISTOGRAM_BINS if high > low else 1.0
        bins = by_column.get(index, {})
        used = HISTOGRAM_BINS if high > low else 1
        profile.histogram = [(low + i * width, low + (i + 1) * width, bins.get(i, 0))
                             for i in range(used)]


def _add_top_values(connection, profiles: list[ColumnProfile]) -> None:
    """Count the values of each text column, in one query, keeping the most frequent."""
    if not profiles:
        return
    parts = [
        f"select {index} as column_index, cast({_quote(p.name)} as varchar) as value, "
        f"count(*) as rows from profiled group by 2"
        for index, p in enumerate(profiles)
    ]
    counts = connection.execute(
        f"select column_index, value, rows from ({' union all '.join(parts)}) "
        f"qualify row_number() over (partition by column_index order by rows desc, value) "
        f"<= {TOP_VALUES} order by column_index, rows desc, value"
    ).fetchall()
    for column_index, value, rows in counts:
        profiles[column_index].top_values.append(("(missing)" if value is None else value, rows))


# --- sources --------------------------------------------------------------------------------

def _check_csv_text(path: Path) -> None:
    """Raise CreditflowError for a CSV file that is an archive or not UTF-8, as the gate does."""
    compressed = _compressed_format(path)
    if compressed:
        raise CreditflowError(f"cannot profile {path}: the file is a {compressed}, not CSV text. "
                              "Extract the CSV file from it and profile that file")
    encoding = check_utf8(path)
    if encoding:
        raise CreditflowError(f"cannot profile {path}: {encoding.message}. Save the file as "
                              "UTF-8 (for example `iconv -f latin1 -t utf-8 FILE`) and profile "
                              "it again")


def _file_view(connection: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Load a CSV or Parquet file into the temporary table ``profiled``, typed by the contract."""
    suffix = path.suffix.lower()
    literal = "'" + str(path).replace("'", "''") + "'"
    if suffix == ".parquet":
        connection.execute(
            f"create temporary table profiled as select * from read_parquet({literal})")
        return
    if suffix != ".csv":
        raise CreditflowError(f"cannot profile {path}: expected a .csv or .parquet file")
    _check_csv_text(path)
    header = connection.execute(
        f"select * from read_csv({literal}, header = true, all_varchar = true) limit 0"
    ).description
    types = {d[0]: COLUMNS_BY_NAME[d[0]].sql_type for d in header if d[0] in COLUMNS_BY_NAME}
    mapping = ", ".join(f"'{name}': '{sql_type}'" for name, sql_type in types.items())
    try:
        connection.execute(
            f"create temporary table profiled as select * from read_csv({literal}, header = true"
            + (f", types = {{{mapping}}}" if mapping else "") + ")")
        connection.execute("select count(*) from profiled").fetchall()
    except duckdb.Error as error:
        raise CreditflowError(
            f"cannot read {path} with the column contract's types: {error}. Check the file "
            "with `creditflow ingest FILE`, whose gate names the rows and values."
        ) from error


def profile_file(path: str | Path) -> list[ColumnProfile]:
    """Profile a CSV or Parquet file."""
    path = Path(path)
    if not path.is_file():
        raise CreditflowError(f"file not found: {path}")
    with duckdb.connect() as connection:
        _file_view(connection, path)
        return profile_relation(connection)


def profile_month(settings: Settings, month: str) -> list[ColumnProfile]:
    """Profile the applications of ``month`` as stored from its file (``raw_applications``)."""
    month = parse_month(month)
    if not warehouse_exists(settings):
        raise CreditflowError(f"warehouse {describe(settings)} does not exist: ingest a file "
                              "first (creditflow ingest FILE), or check CREDITFLOW_HOME")
    with connect(settings, read_only=True) as connection:
        if not table_exists(connection, "raw_applications"):
            raise CreditflowError(f"warehouse {describe(settings)} has no applications yet: "
                                  "ingest a file first (creditflow ingest FILE)")
        rows = connection.execute("select count(*) from raw_applications where month = ?",
                                  [month]).fetchall()[0][0]
        if not rows:
            raise CreditflowError(f"month {month} has no applications in {describe(settings)}: "
                                  "ingest its file first, or profile the file itself")
        if connection.dialect == DUCKDB:
            connection.execute(
                "create temporary table profiled as select * exclude (month, load_id) "
                f"from raw_applications where month = '{month}'")
            return profile_relation(connection)
        # The profile's SQL is DuckDB's, so another warehouse's rows are profiled in memory.
        rows = connection.fetch_frame("select * from raw_applications where month = ?", [month])
    with duckdb.connect() as engine:
        engine.register("month_rows", rows.drop(columns=["month", "load_id"]))
        engine.execute("create temporary table profiled as select * from month_rows")
        return profile_relation(engine)


# --- HTML -----------------------------------------------------------------------------------

def _column_chart(profile: ColumnProfile) -> str:
    # One chart per column: fixed margins instead of tight layout keep 122 charts fast.
    if profile.is_numeric and profile.histogram:
        fig, axes = charts.figure(4.0, 2.0)
        fig.subplots_adjust(left=0.16, right=0.95, bottom=0.2, top=0.9)
        edges = [low for low, _, _ in profile.histogram] + [profile.histogram[-1][1]]
        axes.stairs([count for _, _, count in profile.histogram], edges, fill=True,
                    color="#4a78b5")
        axes.set_ylabel("rows", fontsize=7)
        axes.tick_params(axis="both", labelsize=7)
        return charts.image_tag(fig, f"histogram of {profile.name}", tight=False, dpi=80)
    if profile.top_values:
        values = profile.top_values[::-1]
        fig, axes = charts.figure(4.0, max(1.6, 0.18 * len(values) + 0.5))
        fig.subplots_adjust(left=0.4, right=0.97, bottom=0.08, top=0.97)
        axes.barh([str(v)[:30] for v, _ in values], [count for _, count in values],
                  color="#d08a2c")
        axes.tick_params(axis="both", labelsize=7)
        return charts.image_tag(fig, f"most frequent values of {profile.name}", tight=False,
                                dpi=80)
    return '<p class="note">No values.</p>'


def render_profile(title: str, profiles: list[ColumnProfile], source: str) -> str:
    """Return the profile's HTML page."""
    rows = profiles[0].rows if profiles else 0
    overview = charts.table(
        ["column", "type", "missing share", "distinct", "mean", "min", "max"],
        [(p.name, p.sql_type, p.missing_share, p.distinct, p.stats.get("mean"),
          p.stats.get("min"), p.stats.get("max")) for p in profiles])
    sections = [
        f"<p>{html.escape(source)}: {rows} rows, {len(profiles)} columns. Generated "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC.</p>",
        "<h2>Overview</h2>", overview, "<h2>Columns</h2>",
    ]
    for profile in profiles:
        stats = [("type", profile.sql_type), ("missing", profile.missing),
                 ("missing share", profile.missing_share), ("distinct", profile.distinct)]
        stats += list(profile.stats.items())
        sections.append(f'<h3 id="{html.escape(profile.name)}">{html.escape(profile.name)}</h3>'
                        + charts.table(["statistic", "value"], stats)
                        + _column_chart(profile))
    return charts.page(title, sections)


def write_profile(settings: Settings, file: str | Path | None = None, month: str | None = None,
                  out: str | Path | None = None) -> Path:
    """Profile a file or a stored month and write the HTML page; return its path.

    The default path is ``$CREDITFLOW_HOME/reports/profile_<file stem or month>.html``.
    """
    if (file is None) == (month is None):
        raise CreditflowError("profile takes a FILE or --month YYYY-MM, not both and not neither")
    if file is not None:
        profiles = profile_file(file)
        name, source = Path(file).stem, str(file)
    else:
        try:
            month = parse_month(month)
        except ValueError as error:
            raise CreditflowError(str(error)) from error
        profiles = profile_month(settings, month)
        name, source = month, f"month {month} of {describe(settings)}"
    path = Path(out) if out else settings.reports / f"profile_{name}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_profile(f"creditflow data profile {name}", profiles, source),
                    encoding="utf-8")
    logger.info("profile of %s written to %s", source, path)
    return path


def command_profile(args, settings: Settings) -> int:
    """Run ``creditflow profile FILE|--month M [--out PATH]``."""
    path = write_profile(settings, file=args.file, month=args.month, out=args.out)
    print(f"profile written to {path}")
    return 0


def profile_frame(profiles: list[ColumnProfile]) -> pd.DataFrame:
    """Return the per-column statistics as a table (one row per column)."""
    return pd.DataFrame([{"column": p.name, "type": p.sql_type, "rows": p.rows,
                          "missing": p.missing, "distinct": p.distinct, **p.stats}
                         for p in profiles])
