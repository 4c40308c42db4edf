"""Default labels that arrive after a month was scored: ``creditflow ingest-labels FILE --month M``.

A labels file is a CSV with the columns ``SK_ID_CURR`` and ``TARGET`` (0 = repaid, 1 = default).
Every row is checked before anything is written: IDs must be integers that belong to month M,
TARGET must be 0 or 1, an ID may appear once. A file with any error changes nothing. A valid
file updates ``target`` of those applications in ``raw_applications`` in one transaction and
adds a ``load_log`` row (outcome ``labeled``). The rows keep the load id of the file they came
from. The incremental dbt models still rebuild the month, because its labeled count, default
count or sum of defaulted IDs changed (dbt_project/macros/months_to_rebuild.sql).
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from flows.config import Settings
from flows.errors import CreditflowError
from flows.months import HISTORY, parse_month
from flows.storage import Location, landed_url
from flows.warehouse import Warehouse, connect, init_warehouse, table_exists

logger = logging.getLogger(__name__)

ID_COLUMN = "SK_ID_CURR"
TARGET_COLUMN = "TARGET"
OUTCOME = "labeled"
# Examples listed per kind of error in a message; the count is always given in full.
MAX_EXAMPLES = 5


class LabelsError(CreditflowError):
    """A labels file failed validation; nothing was changed."""


@dataclass
class LabelsResult:
    """Outcome of a labels file that was stored."""

    month: str
    rows: int
    newly_labeled: int
    changed: int
    unchanged: int
    defaults: int
    load_id: str
    sha256: str
    stored_path: Path | str
    message: str


def _examples(items: list[str]) -> str:
    shown = ", ".join(items[:MAX_EXAMPLES])
    more = len(items) - MAX_EXAMPLES
    return shown + (f" and {more} more" if more > 0 else "")


def read_labels(path: Path) -> pd.DataFrame:
    """Read and check a labels file; return columns line, sk_id_curr, target.

    Raises LabelsError naming the file, lines and values of every problem found in the file
    itself (columns, IDs that are not integers, TARGET not 0 or 1, duplicate IDs, no rows).
    """
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise LabelsError(f"{path}: the file is empty; expected a header "
                                  f"{ID_COLUMN},{TARGET_COLUMN} and one row per application")
            names = [name.strip().upper() for name in header]
            missing = [c for c in (ID_COLUMN, TARGET_COLUMN) if c not in names]
            if missing:
                raise LabelsError(
                    f"{path}: missing column(s) {', '.join(missing)} in the header "
                    f"{','.join(header)}; a labels file has the columns {ID_COLUMN} and "
                    f"{TARGET_COLUMN}"
                )
            id_index, target_index = names.index(ID_COLUMN), names.index(TARGET_COLUMN)
            lines, ids, targets, problems = [], [], [], {"id": [], "target": [], "fields": []}
            for line_number, row in enumerate(reader, start=2):
                if not row or all(not field.strip() for field in row):
                    continue
                if len(row) != len(header):
                    problems["fields"].append(f"line {line_number} has {len(row)} fields")
                    continue
                raw_id, raw_target = row[id_index].strip(), row[target_index].strip()
                try:
                    sk_id_curr = int(raw_id)
                except ValueError:
                    problems["id"].append(f"line {line_number}: {raw_id!r}")
                    continue
                if raw_target not in ("0", "1"):
                    problems["target"].append(f"line {line_number} (ID {raw_id}): {raw_target!r}")
                    continue
                lines.append(line_number)
                ids.append(sk_id_curr)
                targets.append(int(raw_target))
    except UnicodeDecodeError as error:
        raise LabelsError(
            f"{path}: not UTF-8 text ({error}); save the file as UTF-8 CSV"
        ) from error
    except OSError as error:
        raise LabelsError(f"cannot read labels file {path}: {error}") from error

    errors = []
    if problems["fields"]:
        errors.append(f"{len(problems['fields'])} row(s) with a wrong number of fields (the "
                      f"header has {len(header)}): {_examples(problems['fields'])}")
    if problems["id"]:
        errors.append(f"{len(problems['id'])} {ID_COLUMN} value(s) are not integers: "
                      f"{_examples(problems['id'])}")
    if problems["target"]:
        errors.append(f"{len(problems['target'])} {TARGET_COLUMN} value(s) are not 0 or 1: "
                      f"{_examples(problems['target'])}")
    labels = pd.DataFrame({"line": lines, "sk_id_curr": ids, "target": targets})
    duplicated = labels[labels["sk_id_curr"].duplicated(keep=False)]
    if not duplicated.empty:
        groups = duplicated.groupby("sk_id_curr")["line"].apply(list)
        listed = [
            f"{sk_id} on lines {', '.join(map(str, group_lines))}"
            for sk_id, group_lines in groups.items()
        ]
        errors.append(f"{len(groups)} {ID_COLUMN} value(s) appear more than once: "
                      f"{_examples(listed)}")
    if errors:
        raise LabelsError(_failure(path, errors))
    if labels.empty:
        raise LabelsError(f"{path}: no label rows after the header; nothing was changed")
    return labels


def _failure(path: Path, errors: list[str], month: str | None = None) -> str:
    where = f" for month {month}" if month else ""
    lines = [f"labels file {path} rejected{where}; nothing was changed:"]
    lines += [f"- {error}" for error in errors]
    lines.append("Correct the file and run `creditflow ingest-labels FILE --month YYYY-MM` again.")
    return "\n".join(lines)


def _check_months(connection: Warehouse, labels: pd.DataFrame, month: str,
                  path: Path) -> pd.DataFrame:
    """Return the stored target of each labeled application; raise when IDs are not in ``month``.

    Leaves the labels in the temporary table ``incoming_labels`` for the update.
    """
    month_rows = connection.execute(
        "select count(*) from raw_applications where month = ?", [month]).fetchall()[0][0]
    if not month_rows:
        raise LabelsError(_failure(path, [
            f"month {month} has no applications in the warehouse; ingest its file first "
            f"(creditflow ingest FILE --month {month}) or check --month"], month))

    connection.insert_frame("incoming_labels", labels, temporary=True)
    found = connection.fetch_frame(
        "select labels.line, labels.sk_id_curr, labels.target, stored.month as stored_month, "
        "stored.target as stored_target "
        "from incoming_labels as labels "
        "left join raw_applications as stored on labels.sk_id_curr = stored.sk_id_curr "
        "order by labels.line"
    )

    errors = []
    unknown = found[found["stored_month"].isna()]
    if not unknown.empty:
        listed = [f"line {r.line}: {r.sk_id_curr}" for r in unknown.itertuples()]
        errors.append(f"{len(unknown)} {ID_COLUMN} value(s) are not in the warehouse: "
                      f"{_examples(listed)}")
    elsewhere = found[found["stored_month"].notna() & (found["stored_month"] != month)]
    if not elsewhere.empty:
        months = ", ".join(f"{m} ({n})" for m, n in
                           elsewhere["stored_month"].value_counts().sort_index().items())
        listed = [f"line {r.line}: {r.sk_id_curr} is in {r.stored_month}"
                  for r in elsewhere.itertuples()]
        other_months = elsewhere["stored_month"].unique()
        if len(elsewhere) == len(found) and len(other_months) == 1:
            hint = (f"every ID belongs to {other_months[0]}: if these are its labels, run "
                    f"with --month {other_months[0]}")
        else:
            hint = "is this the labels file of another month?"
        errors.append(f"{len(elsewhere)} {ID_COLUMN} value(s) belong to other months, not "
                      f"{month} [{months}]: {_examples(listed)}; {hint}")
    if errors:
        raise LabelsError(_failure(path, errors, month))
    return found


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def _kept_key(path: Path, sha256: str) -> str:
    return f"labels/{sha256[:12]}_{path.name}"


def _kept_path(settings: Settings, path: Path, sha256: str) -> Path | str:
    """Return where the labels file is kept: a local path, or its URL in an object store."""
    location = Location(landed_url(settings))
    if location.is_local:
        return Path(location.root) / _kept_key(path, sha256)
    return location.path_of(_kept_key(path, sha256))


def _keep_original(settings: Settings, path: Path, sha256: str) -> None:
    """Keep the labels file under the landed location, unless the same bytes are there.

    A local copy is written atomically and made read-only.
    """
    location = Location(landed_url(settings))
    key = _kept_key(path, sha256)
    if not location.is_local:
        if not location.exists(key):
            location.put_object(path, key)
        return
    target = Path(location.root) / key
    folder = target.parent
    folder.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        staging = folder / f".incoming-{uuid.uuid4().hex}"
        staging.write_bytes(path.read_bytes())
        os.replace(staging, target)
        target.chmod(0o444)


def ingest_labels(settings: Settings, path: str | os.PathLike, month: str,
                  user: str | None = None) -> LabelsResult:
    """Validate the labels file at ``path`` and store its labels for ``month``.

    Raises LabelsError naming the lines and values of every problem; then nothing is changed.
    """
    path = Path(path)
    if not path.is_file():
        raise LabelsError(f"labels file not found: {path}")
    try:
        month = parse_month(month)
    except ValueError as error:
        raise LabelsError(str(error)) from error
    if month == HISTORY:
        raise LabelsError("labels are for a calendar month (YYYY-MM); the history file "
                          "carries its labels itself")
    labels = read_labels(path)
    sha256 = _sha256(path)
    now = datetime.now(UTC).replace(tzinfo=None)
    load_id = f"{now:%Y%m%dT%H%M%S%f}-labels-{sha256[:8]}"

    with connect(settings) as connection:
        init_warehouse(connection)
        found = _check_months(connection, labels, month, path)
        stored = found["stored_target"]
        newly_labeled = int(stored.isna().sum())
        changed = int((stored.notna() & (stored != found["target"])).sum())
        defaults = int(labels["target"].sum())
        stored_path = _kept_path(settings, path, sha256)
        message = (f"{path.name}: {len(labels)} labels stored for month {month} "
                   f"({newly_labeled} new, {changed} changed, "
                   f"{len(labels) - newly_labeled - changed} unchanged; {defaults} defaults)")
        with connection.transaction():
            connection.execute(
                "update raw_applications set target = incoming_labels.target "
                "from incoming_labels "
                "where raw_applications.sk_id_curr = incoming_labels.sk_id_curr "
                "and raw_applications.month = ?",
                [month],
            )
            connection.execute(
                "insert into load_log (load_id, file_name, month, rows, sha256, user_name, "
                "loaded_at, outcome, message, stored_path, report_path) "
                "values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, null)",
                [load_id, path.name, month, len(labels), sha256, user or _current_user(), now,
                 OUTCOME, message, str(stored_path)],
            )
    _keep_original(settings, path, sha256)
    logger.info("%s (load %s)", message, load_id)
    return LabelsResult(month=month, rows=len(labels), newly_labeled=newly_labeled,
                        changed=changed, unchanged=len(labels) - newly_labeled - changed,
                        defaults=defaults, load_id=load_id, sha256=sha256,
                        stored_path=stored_path, message=message)


def _current_user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in some containers
        return "unknown"


def _realized_auc(settings: Settings, month: str) -> float | None:
    with connect(settings, read_only=True) as connection:
        if not table_exists(connection, "monitoring_performance"):
            return None
        rows = connection.execute(
            "select auc from monitoring_performance where month = ?", [month]).fetchall()
    return None if not rows or rows[0][0] is None else float(rows[0][0])


def command_ingest_labels(args, settings: Settings) -> int:
    """Run ``creditflow ingest-labels FILE --month M``, then rebuild features and monitoring.

    Returns 1 when the labels file is rejected, like ``creditflow ingest`` for a rejected
    file. An invalid ``--month`` raises CreditflowError, which the CLI reports with exit code 2.
    """
    from flows.dbt_runner import DbtError, build_features, build_monitoring

    try:
        parse_month(args.month)
    except ValueError as error:
        raise CreditflowError(str(error)) from error
    try:
        result = ingest_labels(settings, args.file, args.month)
    except LabelsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(result.message)
    try:
        build_features(settings)
        build_monitoring(settings)
    except DbtError as error:
        raise CreditflowError(
            f"the labels are stored, but rebuilding the feature and monitoring tables failed: "
            f"{error}\nRun `creditflow build` once the cause is fixed."
        ) from error
    auc = _realized_auc(settings, result.month)
    if auc is not None:
        print(f"realized AUC of {result.month}: {auc:.4f} (monitoring_performance)")
    else:
        print(f"month {result.month} has no realized AUC yet: it needs scores and both classes")
    return 0
