"""Connections to the warehouse: a DuckDB file (the default) or a PostgreSQL database.

Configuration chooses the engine: with ``CREDITFLOW_WAREHOUSE_URL`` unset the warehouse is the
DuckDB file ``$CREDITFLOW_HOME/warehouse.duckdb``; with a ``postgresql://user@host:port/db`` URL
it is that database. Callers use one interface, :class:`Warehouse`, and write SQL with ``?``
placeholders; the PostgreSQL implementation translates them for its driver.

DuckDB lets one process hold a read-write connection to a file, and that connection locks the
file against every other process, read-only ones included. Every step therefore opens the
warehouse, does its work and closes it, so the next step or process can open it. PostgreSQL has
no such lock, so ``wait_seconds`` only applies to DuckDB.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, parse_qs, urlsplit

import duckdb
import pandas as pd
import pyarrow as pa

from flows.errors import CreditflowError

if TYPE_CHECKING:
    from flows.config import Settings

logger = logging.getLogger(__name__)

DUCKDB, POSTGRES = "duckdb", "postgres"
# Seconds a PostgreSQL connection attempt may take before it fails as unreachable.
POSTGRES_CONNECT_TIMEOUT_SECONDS = 10


class WarehouseLockedError(RuntimeError):
    """Raised when another process has the DuckDB file open."""


class WarehouseUnavailableError(CreditflowError):
    """Raised when the configured PostgreSQL server cannot be reached or refuses the login."""


class WarehouseUrlError(CreditflowError):
    """Raised when CREDITFLOW_WAREHOUSE_URL is not a PostgreSQL URL that libpq can parse safely."""


# --- configuration --------------------------------------------------------------------------

def warehouse_url(settings: Settings) -> str | None:
    """Return the configured PostgreSQL URL, or None for the DuckDB file."""
    return getattr(settings, "warehouse_url", None) or None


def dialect_of(settings: Settings) -> str:
    return POSTGRES if warehouse_url(settings) else DUCKDB


# A password in a key=value connection string or in a URL's query (password=...).
_PASSWORD_SETTING = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]+)", re.IGNORECASE)
POSTGRES_SCHEMES = ("postgresql", "postgres")


def redact_url(url: str) -> str:
    """Return ``url`` with its password replaced by ``***``, for messages and logs.

    Works without parsing the URL, so a malformed one is redacted too: everything between the
    user name's ``:`` and the last ``@`` is masked, which covers an unescaped ``@`` or ``/`` in
    the password. A ``password=`` setting (key=value string or URL query) is masked as well.
    """
    redacted = _PASSWORD_SETTING.sub(r"\1***", url)
    if "://" not in redacted:
        return redacted
    scheme, rest = redacted.split("://", 1)
    at = rest.rfind("@")
    if at < 0 or ":" not in rest[:at]:
        return redacted
    user = rest[:at].split(":", 1)[0]
    return f"{scheme}://{user}:***{rest[at:]}"


def _has_valid_port(parts: SplitResult) -> bool:
    try:
        parts.port  # noqa: B018 - urlsplit checks the port only when it is read
    except ValueError:
        return False
    return True


def validate_warehouse_url(url: str) -> SplitResult:
    """Check that ``url`` is a postgresql:// URL with a parseable authority, and split it.

    Raises WarehouseUrlError naming the problem and the URL with its password masked, before
    the URL reaches libpq, whose errors can echo the password.
    """
    redacted_url = redact_url(url)
    fix = ("Write it as postgresql://USER:PASSWORD@HOST:PORT/DATABASE, or unset it to use the "
           "DuckDB file.")
    if "://" not in url:
        raise WarehouseUrlError(
            f"CREDITFLOW_WAREHOUSE_URL={redacted_url} is not a URL: key=value connection "
            f"strings are not supported. {fix}")
    scheme = url.split("://", 1)[0]
    if scheme.lower() not in POSTGRES_SCHEMES:
        raise WarehouseUrlError(
            f"CREDITFLOW_WAREHOUSE_URL={redacted_url} has the scheme {scheme!r}, but only "
            f"postgresql:// and postgres:// URLs are supported. {fix}")
    try:
        parts = urlsplit(url)
    except ValueError:
        # urlsplit's message can contain the authority, password included, so it is dropped.
        raise WarehouseUrlError(
            f"CREDITFLOW_WAREHOUSE_URL={redacted_url} is not a valid URL: its host part cannot be "
            "parsed (an IPv6 address needs both [ and ]). " + fix) from None
    if parts.netloc.count("@") > 1:
        raise WarehouseUrlError(
            f"CREDITFLOW_WAREHOUSE_URL={redacted_url} contains more than one '@' before the host. "
            "Percent-encode '@' in the user name or password as %40.")
    port_error = not _has_valid_port(parts)
    # An unescaped '/', '?' or '#' in the password ends the authority early, so the password's
    # tail becomes the port or path, and the '@' before the host follows the authority.
    after_authority = url.split("://", 1)[1][len(parts.netloc):]
    if "@" not in parts.netloc and "@" in after_authority and ("@" in parts.path or port_error):
        raise WarehouseUrlError(
            f"CREDITFLOW_WAREHOUSE_URL={redacted_url} has an '@' after the host part, so the "
            "user name or password probably contains '/', '?' or '#'. Percent-encode them as "
            "%2F, %3F and %23.")
    if port_error:
        port = parts.netloc.rsplit("@", 1)[-1].rsplit(":", 1)[-1]
        raise WarehouseUrlError(
            f"CREDITFLOW_WAREHOUSE_URL={redacted_url} has the invalid port {port!r}: expected a "
            "whole number up to 65535.")
    return parts


def describe(settings: Settings) -> str:
    """Name the warehouse in messages: the DuckDB path, or the URL without its password."""
    url = warehouse_url(settings)
    return redact_url(url) if url else str(settings.warehouse)


def warehouse_exists(settings: Settings) -> bool:
    """Return whether the warehouse may hold data: the DuckDB file exists, or a URL is set.

    A configured PostgreSQL database counts as existing; an unreachable server raises
    :class:`WarehouseUnavailableError` on :func:`connect` instead.
    """
    return bool(warehouse_url(settings)) or Path(settings.warehouse).exists()


# --- the interface --------------------------------------------------------------------------

class Warehouse:
    """An open warehouse connection; SQL uses ``?`` placeholders in both dialects.

    ``execute`` returns the warehouse itself, so ``execute(...).fetchone()`` reads the result
    of that statement, as with a DuckDB connection.
    """

    dialect: str = ""

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> Warehouse:
        raise NotImplementedError

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> Warehouse:
        raise NotImplementedError

    def fetchone(self) -> tuple | None:
        raise NotImplementedError

    def fetchall(self) -> list[tuple]:
        raise NotImplementedError

    @property
    def description(self) -> list[tuple]:
        raise NotImplementedError

    def fetch_frame(self, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        """Run ``sql`` and return its rows with the column types DuckDB's ``df()`` gives."""
        raise NotImplementedError

    def insert_frame(self, table: str, frame: pd.DataFrame | pa.Table,
                     temporary: bool = False) -> None:
        """Insert the rows of ``frame`` into ``table``, matching columns by name.

        With ``temporary`` the table is first created for this connection only, with the
        frame's columns and types, replacing an earlier one of the same name.
        """
        raise NotImplementedError

    def table_exists(self, name: str) -> bool:
        raise NotImplementedError

    def column_types(self, table: str) -> dict[str, str]:
        """Return the columns of ``table`` in order, with DuckDB type names (VARCHAR, ...)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Run the block in one transaction: commit at its end, roll back on any exception."""
        self.execute("begin transaction")
        try:
            yield
        except BaseException:
            self.execute("rollback")
            raise
        self.execute("commit")


# --- DuckDB ---------------------------------------------------------------------------------

class DuckDBWarehouse(Warehouse):
    """The DuckDB file. Attributes it does not define (``register``, ``df``, ...) are the
    DuckDB connection's own, for code written against a DuckDB connection."""

    dialect = DUCKDB

    def __init__(self, connection: duckdb.DuckDBPyConnection) -> None:
        self.connection = connection

    def __getattr__(self, name: str) -> Any:
        return getattr(self.connection, name)

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> DuckDBWarehouse:
        self.connection.execute(sql, list(params) if params else [])
        return self

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> DuckDBWarehouse:
        self.connection.executemany(sql, [list(row) for row in rows])
        return self

    def fetchone(self) -> tuple | None:
        return self.connection.fetchone()

    def fetchall(self) -> list[tuple]:
        return self.connection.fetchall()

    @property
    def description(self) -> list[tuple]:
        return self.connection.description

    def fetch_frame(self, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        return self.connection.execute(sql, list(params) if params else []).df()

    def insert_frame(self, table: str, frame: pd.DataFrame | pa.Table,
                     temporary: bool = False) -> None:
        view = f"_incoming_{table}"
        self.connection.register(view, frame)
        try:
            if temporary:
                self.connection.execute(
                    f"create or replace temp table {table} as select * from {view}")
                return
            names = ", ".join(_column_names(frame))
            self.connection.execute(
                f"insert into {table} ({names}) select {names} from {view}")
        finally:
            self.connection.unregister(view)

    def table_exists(self, name: str) -> bool:
        return table_exists(self.connection, name)

    def column_types(self, table: str) -> dict[str, str]:
        rows = self.connection.execute(
            "select column_name, data_type from information_schema.columns "
            "where table_name = ? order by ordinal_position", [table]
        ).fetchall()
        return {name: data_type for name, data_type in rows}

    def close(self) -> None:
        self.connection.close()


def _is_lock_error(error: duckdb.Error) -> bool:
    text = str(error).lower()
    return "lock" in text and ("conflicting" in text or "could not set" in text)


def _open_duckdb(path: Path, read_only: bool, wait_seconds: float) -> duckdb.DuckDBPyConnection:
    path = Path(path)
    if read_only and not path.exists():
        raise FileNotFoundError(
            f"warehouse {path} does not exist yet: ingest a file first "
            "(creditflow ingest FILE) or check CREDITFLOW_HOME"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.Error as error:
            if not _is_lock_error(error):
                raise
            if time.monotonic() >= deadline:
                raise WarehouseLockedError(
                    f"warehouse {path} is locked by another process ({error}). Wait for the "
                    "running step to finish (creditflow status) or stop the process that holds it."
                ) from error
            logger.info("warehouse %s is locked, retrying in 0.5 s", path)
            time.sleep(0.5)


# --- PostgreSQL -----------------------------------------------------------------------------

# PostgreSQL type OIDs (pg_type.oid, fixed in every server) and the Arrow type of each, so
# fetch_frame builds the same pandas types as DuckDB's df() for the same columns.
_ARROW_TYPES = {
    16: pa.bool_(),
    20: pa.int64(),
    21: pa.int16(),
    23: pa.int32(),
    700: pa.float32(),
    701: pa.float64(),
    25: pa.string(),
    1042: pa.string(),
    1043: pa.string(),
    1082: pa.date32(),
    1114: pa.timestamp("us"),
    1184: pa.timestamp("us", tz="UTC"),
}
_NUMERIC_OID = 1700
# DuckDB type of each PostgreSQL type OID, to read COPY's CSV output. NUMERIC (sums, averages)
# becomes DOUBLE, as DuckDB's df() gives for its HUGEINT sums; unlisted types are read as text.
_DUCKDB_TYPES = {
    16: "BOOLEAN",
    20: "BIGINT",
    21: "SMALLINT",
    23: "INTEGER",
    700: "FLOAT",
    701: "DOUBLE",
    _NUMERIC_OID: "DOUBLE",
    25: "VARCHAR",
    1042: "VARCHAR",
    1043: "VARCHAR",
    1082: "DATE",
    1114: "TIMESTAMP",
    1184: "TIMESTAMPTZ",
}
# information_schema type names of PostgreSQL and the DuckDB names code compares against.
_DUCKDB_TYPE_NAMES = {
    "character varying": "VARCHAR",
    "text": "VARCHAR",
    "character": "VARCHAR",
    "double precision": "DOUBLE",
    "real": "FLOAT",
    "bigint": "BIGINT",
    "integer": "INTEGER",
    "smallint": "SMALLINT",
    "boolean": "BOOLEAN",
    "timestamp without time zone": "TIMESTAMP",
    "timestamp with time zone": "TIMESTAMP WITH TIME ZONE",
    "date": "DATE",
    "numeric": "DECIMAL",
}


def _numeric_value(text: str | None, _cursor: Any) -> int | float | None:
    """Read a NUMERIC as int when it has no fraction (``sum`` of bigints), else as float.

    DuckDB returns these aggregates as integers or doubles, and callers format them as such.
    """
    if text is None:
        return None
    if "." in text or "e" in text.lower() or text.lower() in ("nan", "infinity", "-infinity"):
        return float(Decimal(text))
    return int(text)


def _to_driver_sql(sql: str, params: Sequence[Any] | None) -> str:
    """Translate ``?`` placeholders to psycopg's ``%s`` (doubling literal ``%`` signs)."""
    if not params:
        return sql
    return sql.replace("%", "%%").replace("?", "%s")


def _driver_value(value: Any) -> Any:
    """Convert numpy and pandas scalars, which psycopg cannot adapt, to Python values."""
    if value is None or value is pd.NaT:
        return None
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        return value.item()
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    return value


class PostgresWarehouse(Warehouse):
    """A PostgreSQL database through psycopg2, in autocommit mode like a DuckDB connection."""

    dialect = POSTGRES

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.cursor = connection.cursor()

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> PostgresWarehouse:
        values = [_driver_value(value) for value in params] if params else None
        self.cursor.execute(_to_driver_sql(sql, values), values)
        return self

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> PostgresWarehouse:
        rows = [[_driver_value(value) for value in row] for row in rows]
        if rows:
            self.cursor.executemany(_to_driver_sql(sql, rows[0]), rows)
        return self

    def fetchone(self) -> tuple | None:
        return self.cursor.fetchone()

    def fetchall(self) -> list[tuple]:
        return self.cursor.fetchall()

    @property
    def description(self) -> list[tuple]:
        return [tuple(column) for column in self.cursor.description or []]

    def fetch_frame(self, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        values = [_driver_value(value) for value in params] if params else None
        query = self.cursor.mogrify(_to_driver_sql(sql, values), values).decode("utf-8")
        self.cursor.execute(f"select * from ({query}) as fetched limit 0")
        columns = [(column.name, _DUCKDB_TYPES.get(column.type_code, "VARCHAR"))
                   for column in self.cursor.description or []]
        if not columns or len({name for name, _ in columns}) < len(columns):
            return self._fetch_rows_frame(query)
        # COPY sends the rows as CSV, and DuckDB reads them with their PostgreSQL types, so the
        # frame has the dtypes of DuckDB's df(). It took a fifth of the time of fetching rows as
        # Python objects for 50,000 rows of 101 columns (the _fetch_rows_frame path).
        with tempfile.TemporaryDirectory(prefix="creditflow-copy-") as folder:
            path = Path(folder) / "rows.csv"
            with path.open("w", encoding="utf-8") as rows:
                self.cursor.copy_expert(
                    f"copy ({query}) to stdout with (format csv, null '\\N')", rows)
            types = ", ".join(f"{_sql_text(name)}: {_sql_text(kind)}" for name, kind in columns)
            with duckdb.connect() as reader:
                return reader.execute(
                    f"select * from read_csv({_sql_text(str(path))}, header = false, "
                    f"columns = {{{types}}}, auto_detect = false, delim = ',', quote = '\"', "
                    "escape = '\"', nullstr = '\\N', allow_quoted_nulls = false)"
                ).df()

    def _fetch_rows_frame(self, query: str) -> pd.DataFrame:
        """Fetch ``query`` row by row; for results with repeated column names."""
        self.cursor.execute(query)
        columns = self.cursor.description or []
        rows = self.cursor.fetchall()
        arrays = {}
        for position, column in enumerate(columns):
            values = [row[position] for row in rows]
            arrow_type = _ARROW_TYPES.get(column.type_code)
            if column.type_code == _NUMERIC_OID:
                arrow_type = (pa.float64() if any(isinstance(v, float) for v in values)
                              else pa.int64())
            arrays[column.name] = pa.array(values, type=arrow_type)
        table = pa.table(arrays) if arrays else pa.table({})
        # DuckDB converts the Arrow table, so the frame has the dtypes of DuckDB's own df().
        with duckdb.connect() as converter:
            converter.register("fetched", table)
            return converter.execute("select * from fetched").df()

    def insert_frame(self, table: str, frame: pd.DataFrame | pa.Table,
                     temporary: bool = False) -> None:
        with duckdb.connect() as writer:
            writer.register("incoming", frame)
            self.copy_from_duckdb(writer, "incoming", table, temporary)

    def copy_from_duckdb(self, engine: duckdb.DuckDBPyConnection, relation: str, table: str,
                         temporary: bool = False) -> None:
        """Copy the rows of DuckDB's ``relation`` into ``table`` with PostgreSQL's COPY.

        With ``temporary`` the table is created first, with the relation's column types.
        """
        described = engine.execute(f"describe select * from {relation}").fetchall()
        with tempfile.TemporaryDirectory(prefix="creditflow-copy-") as folder:
            path = Path(folder) / "rows.csv"
            # DuckDB writes each double in its shortest exact form, so PostgreSQL reads back
            # the same bits. \N marks NULL, so an empty string stays an empty string.
            engine.execute(f"copy (select * from {relation}) to '{path}' "
                           "(format csv, header false, nullstr '\\N')")
            if temporary:
                columns = ", ".join(f"{_quote(name)} {_postgres_type(kind)}"
                                    for name, kind, *_ in described)
                self.execute(f"drop table if exists {table}")
                self.execute(f"create temporary table {table} ({columns})")
            quoted = ", ".join(_quote(name) for name, *_ in described)
            with path.open("r", encoding="utf-8") as rows:
                self.cursor.copy_expert(
                    f"copy {table} ({quoted}) from stdin with (format csv, null '\\N')", rows)

    def table_exists(self, name: str) -> bool:
        # to_regclass resolves the name through the search path, temporary tables included.
        row = self.execute("select to_regclass(?) is not null", [name]).fetchone()
        return bool(row and row[0])

    def column_types(self, table: str) -> dict[str, str]:
        rows = self.execute(
            "select column_name, data_type from information_schema.columns "
            "where table_name = ? and table_schema = current_schema() "
            "order by ordinal_position", [table]
        ).fetchall()
        return {name: _DUCKDB_TYPE_NAMES.get(kind, kind.upper()) for name, kind in rows}

    def close(self) -> None:
        self.cursor.close()
        self.connection.close()


def _postgres_type(duckdb_type: str) -> str:
    upper = duckdb_type.upper()
    if upper == "DOUBLE":
        return "double precision"
    if upper == "FLOAT":
        return "real"
    if upper in ("VARCHAR", "STRING", "NULL") or upper.startswith("VARCHAR"):
        # DuckDB types a column of only NULLs (from pandas) as NULL, which PostgreSQL lacks.
        return "varchar"
    if upper == "HUGEINT":
        return "numeric"
    return duckdb_type.lower()


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _column_names(frame: pd.DataFrame | pa.Table) -> list[str]:
    return [str(name) for name in (frame.column_names if isinstance(frame, pa.Table)
                                   else frame.columns)]


def _open_postgres(url: str, read_only: bool = False) -> Any:
    import psycopg2
    import psycopg2.extensions

    parts = validate_warehouse_url(url)
    host = parts.hostname or (parse_qs(parts.query).get("host") or ["the default Unix socket"])[-1]
    where = f"{host}:{parts.port or 5432}"
    try:
        connection = psycopg2.connect(url, connect_timeout=POSTGRES_CONNECT_TIMEOUT_SECONDS)
    except psycopg2.OperationalError as error:
        # libpq's message names host and port; any copy of the password in it is masked.
        reason = str(error).strip().splitlines()[0] if str(error).strip() else "no reason given"
        if parts.password:
            reason = reason.replace(parts.password, "***")
        raise WarehouseUnavailableError(
            f"PostgreSQL warehouse at {where} (database {parts.path.lstrip('/') or '?'}, "
            f"from CREDITFLOW_WAREHOUSE_URL={redact_url(url)}) cannot be reached: "
            f"{reason}. Start the server or fix "
            "host, port, user and password in CREDITFLOW_WAREHOUSE_URL; unset it to use the "
            "DuckDB file instead."
        ) from None
    connection.autocommit = True
    # COPY's CSV must carry doubles exactly. Before PostgreSQL 12 that needs 3 extra digits, and
    # from 12 on any value above 0 gives the shortest exact form.
    with connection.cursor() as cursor:
        cursor.execute("set extra_float_digits = 3")
    if read_only:
        # Every transaction of the session is read-only; temporary tables stay writable.
        connection.readonly = True
    numeric = psycopg2.extensions.new_type((_NUMERIC_OID,), "CREDITFLOW_NUMERIC", _numeric_value)
    psycopg2.extensions.register_type(numeric, connection)
    return connection


# --- opening --------------------------------------------------------------------------------

@contextlib.contextmanager
def connect(target: Settings | str | os.PathLike, read_only: bool = False,
            wait_seconds: float = 0.0) -> Iterator[Warehouse]:
    """Open the configured warehouse of ``target`` (Settings) or the DuckDB file ``target``.

    For DuckDB, waits up to ``wait_seconds`` for another process's lock and raises
    :class:`WarehouseLockedError` naming the file when it stays locked. For PostgreSQL,
    raises :class:`WarehouseUnavailableError` naming host and port when the server cannot be
    reached. There ``read_only`` makes the session's transactions read-only, and
    ``wait_seconds`` does not apply.
    """
    if isinstance(target, str | os.PathLike):
        warehouse: Warehouse = DuckDBWarehouse(_open_duckdb(Path(target), read_only,
                                                            wait_seconds))
    elif warehouse_url(target):
        warehouse = PostgresWarehouse(_open_postgres(warehouse_url(target), read_only))
    else:
        warehouse = DuckDBWarehouse(_open_duckdb(target.warehouse, read_only, wait_seconds))
    try:
        yield warehouse
    finally:
        warehouse.close()


@contextlib.contextmanager
def file_engine(warehouse: Warehouse) -> Iterator[duckdb.DuckDBPyConnection]:
    """Return the DuckDB connection that reads incoming files for the gate.

    On DuckDB it is the warehouse connection itself, so the gate's staged view can be joined
    with the stored rows. On PostgreSQL it is an in-memory DuckDB database; the staged rows
    then reach PostgreSQL through :func:`stage_in_warehouse`.
    """
    if isinstance(warehouse, DuckDBWarehouse):
        yield warehouse.connection
        return
    with duckdb.connect() as engine:
        yield engine


def stage_in_warehouse(warehouse: Warehouse, engine: duckdb.DuckDBPyConnection,
                       relation: str) -> None:
    """Make the file engine's ``relation`` queryable in the warehouse under the same name.

    A no-op on DuckDB, where the engine is the warehouse. On PostgreSQL the rows are copied
    into a temporary table that lives until the connection closes.
    """
    if isinstance(warehouse, PostgresWarehouse):
        warehouse.copy_from_duckdb(engine, relation, relation, temporary=True)


def table_exists(connection: Any, name: str) -> bool:
    """Return whether table or view ``name`` exists in ``connection`` (a Warehouse or DuckDB)."""
    if isinstance(connection, Warehouse):
        return connection.table_exists(name)
    row = connection.execute(
        "select count(*) from information_schema.tables where table_name = ?", [name]
    ).fetchone()
    return bool(row and row[0])


def portable_type(sql_type: str) -> str:
    """Return a column type both DuckDB and PostgreSQL accept (DOUBLE -> double precision)."""
    return "double precision" if sql_type.upper() == "DOUBLE" else sql_type.lower()


# --- tables written by Python ---------------------------------------------------------------

def _raw_applications_ddl() -> str:
    from flows.schema import COLUMNS

    columns = ",\n    ".join(f"{c.name.lower()} {portable_type(c.sql_type)}" for c in COLUMNS)
    return f"""
create table if not exists raw_applications (
    {columns},
    month varchar not null,
    load_id varchar not null
)"""


# Tables written by Python code. dbt declares them as sources, so they exist before the first
# `dbt build` and the lineage in dbt docs starts at the landed file. The types are those both
# DuckDB and PostgreSQL know.
_TABLES = {
    "load_log": """
create table if not exists load_log (
    load_id varchar primary key,
    file_name varchar not null,
    month varchar,
    rows bigint,
    sha256 varchar,
    user_name varchar,
    loaded_at timestamp not null,
    outcome varchar not null,
    message varchar,
    stored_path varchar,
    report_path varchar
)""",
    "predictions": """
create table if not exists predictions (
    sk_id_curr bigint not null,
    score_month varchar not null,
    model_id varchar not null,
    default_probability double precision not null,
    decision varchar not null,
    reason_codes varchar,
    scored_at timestamp not null,
    primary key (sk_id_curr, score_month)
)""",
    "model_registry": """
create table if not exists model_registry (
    model_id varchar primary key,
    trained_at timestamp not null,
    score_month varchar,
    training_months varchar not null,
    validation_month varchar,
    params varchar,
    features varchar,
    metrics varchar,
    data_fingerprint varchar,
    status varchar not null,
    artifact_path varchar not null,
    artifact_sha256 varchar not null,
    note varchar
)""",
    "model_features": """
create table if not exists model_features (
    model_id varchar not null,
    feature varchar not null,
    is_categorical boolean not null,
    gain_importance double precision,
    primary key (model_id, feature)
)""",
    "model_training_months": """
create table if not exists model_training_months (
    model_id varchar not null,
    month varchar not null,
    primary key (model_id, month)
)""",
    "pipeline_runs": """
create table if not exists pipeline_runs (
    run_id varchar not null,
    month varchar not null,
    step varchar not null,
    started_at timestamp not null,
    ended_at timestamp,
    status varchar not null,
    error varchar,
    detail varchar
)""",
}


def init_warehouse(connection: Any) -> None:
    """Create the tables Python code writes, if they are missing (Warehouse or DuckDB)."""
    if isinstance(connection, PostgresWarehouse):
        # Two processes creating the same table at once collide in PostgreSQL's catalog even
        # with "if not exists", so the creation is serialized by an advisory lock.
        with connection.transaction():
            connection.execute("select pg_advisory_xact_lock(hashtext('creditflow_init'))")
            _create_tables(connection)
        return
    _create_tables(connection)


def _create_tables(connection: Any) -> None:
    connection.execute(_raw_applications_ddl())
    for ddl in _TABLES.values():
        connection.execute(ddl)
