"""Receiving an uploaded application file: streamed to disk, size-limited, content-checked.

The multipart body is parsed as it arrives, and the file part is written in chunks to a new
directory under ``$CREDITFLOW_HOME/uploads``. Memory use stays flat for large files, and the
size limit stops the upload as soon as the file passes it. The stored file is named after the month
(``20210101.csv``, ``initial.csv``), never after the client's file name.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import anyio
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from flows.gate_read import delimiter_finding
from flows.months import monthly_file_name, parse_month
from flows.schema import ID_COLUMN

logger = logging.getLogger(__name__)

DEFAULT_MAX_UPLOAD_BYTES = 1024**3
MAX_UPLOAD_ENV = "CREDITFLOW_MAX_UPLOAD_BYTES"
# Room for multipart boundaries and the small form fields on top of the file itself.
_BODY_OVERHEAD_BYTES = 64 * 1024
# After a too-large file, read and discard at most this much more, so the client, which is
# still sending, can read the 413 response instead of seeing the connection reset.
_DRAIN_LIMIT_BYTES = 8 * 1024 * 1024
_MAX_FIELD_BYTES = 1024
_MAX_PARTS = 8
_SNIFF_BYTES = 64 * 1024
PARQUET_MAGIC = b"PAR1"
# Leading bytes of formats people upload by mistake (xlsx and zip, gzip, PDF, PNG, JPEG, xls).
_BINARY_SIGNATURES = (b"PK\x03\x04", b"\x1f\x8b", b"%PDF", b"\x89PNG", b"\xff\xd8\xff",
                      b"\xd0\xcf\x11\xe0")


class UploadError(Exception):
    """An upload the API rejects, with the HTTP status and a message saying what to do.

    ``client_filename`` (sanitized by :func:`safe_display_name`) and ``month`` are set when
    the form got far enough to contain them, for the audit log.
    """

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.client_filename: str | None = None
        self.month: str | None = None

    def audit_target(self) -> str | None:
        """Return the audit target: ``month (client file name)`` with the parts known."""
        if self.client_filename is None:
            return self.month
        return f"{self.month or '-'} ({self.client_filename})"


@dataclass(frozen=True)
class ReceivedUpload:
    """An uploaded file stored on disk, before the gate has seen it."""

    path: Path
    month: str
    file_format: str  # "csv" or "parquet"
    size_bytes: int
    client_filename: str


def max_upload_bytes_from_env() -> int:
    """Return the upload size limit from ``CREDITFLOW_MAX_UPLOAD_BYTES`` (default 1 GiB)."""
    text = os.environ.get(MAX_UPLOAD_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_UPLOAD_BYTES
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise ValueError(f"invalid {MAX_UPLOAD_ENV}={text!r}: give a positive number of bytes")
    return value


def describe_size(size: int) -> str:
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= factor:
            return f"{size / factor:.1f} {unit}"
    return f"{size} bytes"


def safe_display_name(name: str | None) -> str:
    """Return the client's file name reduced to printable characters, for messages and audit."""
    text = "".join(ch for ch in (name or "") if ch.isprintable())
    return text[-120:] or "(unnamed)"


class _FormReceiver:
    """Callbacks of python-multipart's parser that keep small fields and collect file chunks."""

    def __init__(self, max_file_bytes: int) -> None:
        self.max_file_bytes = max_file_bytes
        self.fields: dict[str, str] = {}
        self.client_filename: str | None = None
        self.file_bytes = 0
        self.pending: list[bytes] = []
        self.too_large = False
        self.parts = 0
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self._part_name: str | None = None
        self._part_is_file = False
        self._part_data = bytearray()

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self.on_part_begin,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
        }

    def on_part_begin(self) -> None:
        self.parts += 1
        if self.parts > _MAX_PARTS:
            raise UploadError(400, f"too many form fields: send only 'file' and 'month' "
                                   f"(at most {_MAX_PARTS} parts)")
        self._disposition = b""
        self._part_name = None
        self._part_is_file = False
        self._part_data = bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = b""
        self._header_value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        name = options.get(b"name")
        if name is None:
            raise UploadError(400, "a form part has no name: send the fields 'file' and 'month'")
        self._part_name = name.decode("utf-8", "replace")
        if self._part_name == "file":
            if self.client_filename is not None:
                raise UploadError(400, "more than one 'file' field: upload one file per request")
            self._part_is_file = True
            self.client_filename = options.get(b"filename", b"").decode("utf-8", "replace")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._part_is_file:
            if self.too_large:
                return
            self.file_bytes += end - start
            if self.file_bytes > self.max_file_bytes:
                self.too_large = True
                self.pending.clear()
                return
            self.pending.append(bytes(data[start:end]))
            return
        if len(self._part_data) + (end - start) > _MAX_FIELD_BYTES:
            raise UploadError(400, f"form field {self._part_name!r} is longer than "
                                   f"{_MAX_FIELD_BYTES} bytes: send the month as YYYY-MM")
        self._part_data.extend(data[start:end])

    def on_part_end(self) -> None:
        if not self._part_is_file and self._part_name is not None:
            self.fields[self._part_name] = self._part_data.decode("utf-8", "replace")


def _too_large_error(limit: int) -> UploadError:
    return UploadError(
        413,
        f"the file is larger than the upload limit of {describe_size(limit)} ({limit} bytes): "
        "split it, or ask the administrator to raise CREDITFLOW_MAX_UPLOAD_BYTES",
    )


async def _drain(stream, already: int) -> None:
    drained = already
    try:
        async for chunk in stream:
            drained += len(chunk)
            if drained > _DRAIN_LIMIT_BYTES:
                return
    except ClientDisconnect:
        return


async def receive_upload(request: Request, upload_root: Path, max_bytes: int) -> ReceivedUpload:
    """Stream the multipart body of ``request`` to a new file under ``upload_root``.

    Raises UploadError with status 400, 413, 415 or 422 and a message for the client.
    """
    content_type = request.headers.get("content-type", "")
    kind, params = parse_options_header(content_type)
    if kind != b"multipart/form-data" or b"boundary" not in params:
        raise UploadError(415, "send the upload as multipart/form-data with the fields 'file' "
                               "(the CSV or Parquet file) and 'month' (YYYY-MM or history)")
    stream = request.stream()
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes + _BODY_OVERHEAD_BYTES:
        await _drain(stream, 0)
        raise _too_large_error(max_bytes)

    upload_dir = upload_root / uuid.uuid4().hex
    upload_dir.mkdir(parents=True)
    part_path = upload_dir / "upload.part"
    receiver = _FormReceiver(max_bytes)
    parser = MultipartParser(params[b"boundary"], receiver.callbacks())
    received = 0
    try:
        async with await anyio.open_file(part_path, "wb") as out:
            async for chunk in stream:
                received += len(chunk)
                parser.write(chunk)
                if receiver.too_large:
                    await _drain(stream, 0)
                    raise _too_large_error(max_bytes)
                if receiver.pending:
                    data = b"".join(receiver.pending)
                    receiver.pending.clear()
                    await out.write(data)
            parser.finalize()
        return _finish_upload(receiver, part_path, upload_dir)
    except UploadError as error:
        shutil.rmtree(upload_dir, ignore_errors=True)
        _describe_form(error, receiver)
        raise
    except ClientDisconnect:
        shutil.rmtree(upload_dir, ignore_errors=True)
        raise UploadError(400, "the client disconnected before the upload finished: "
                               "upload the file again") from None
    except Exception as error:  # python-multipart raises several error classes on bad bodies
        shutil.rmtree(upload_dir, ignore_errors=True)
        logger.info("rejected a malformed multipart body after %d bytes: %s", received, error)
        raise UploadError(400, "the multipart body is malformed: send a form with the fields "
                               "'file' and 'month' (e.g. curl -F file=@20210101.csv "
                               "-F month=2021-01)") from None


def _describe_form(error: UploadError, receiver: _FormReceiver) -> None:
    """Copy the client's file name and a valid month of the form into ``error``."""
    if receiver.client_filename is not None:
        error.client_filename = safe_display_name(receiver.client_filename)
    with contextlib.suppress(ValueError):
        error.month = parse_month(receiver.fields.get("month") or "")


def _finish_upload(receiver: _FormReceiver, part_path: Path, upload_dir: Path) -> ReceivedUpload:
    if receiver.client_filename is None:
        raise UploadError(422, "the form has no 'file' field: attach the CSV or Parquet file "
                               "as 'file'")
    month_text = receiver.fields.get("month")
    if month_text is None:
        raise UploadError(422, "the form has no 'month' field: give the month as YYYY-MM "
                               "(e.g. 2021-01), or 'history' for the initial file")
    try:
        month = parse_month(month_text)
    except ValueError as error:
        raise UploadError(422, str(error)) from None
    client_name = safe_display_name(receiver.client_filename)
    if receiver.file_bytes == 0:
        raise UploadError(422, f"the uploaded file {client_name!r} is empty: upload the month's "
                               "CSV or Parquet file")
    file_format = sniff_format(part_path, client_name)
    stored_name = Path(monthly_file_name(month)).with_suffix(f".{file_format}").name
    final_path = upload_dir / stored_name
    part_path.rename(final_path)
    return ReceivedUpload(final_path, month, file_format, receiver.file_bytes, client_name)


def sniff_format(path: Path, client_name: str) -> str:
    """Return "csv" or "parquet" from the file's bytes, or raise UploadError (415 or 422).

    Parquet files start and end with ``PAR1``. A CSV must be UTF-8 text whose first line is a
    header naming the application key ``SK_ID_CURR``; the gate checks every other column.
    A header separated by ';', tabs or '|' gets the gate's message about the delimiter.
    """
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(_SNIFF_BYTES)
        handle.seek(max(size - len(PARQUET_MAGIC), 0))
        tail = handle.read(len(PARQUET_MAGIC))
    if head.startswith(PARQUET_MAGIC):
        if tail != PARQUET_MAGIC or size < 2 * len(PARQUET_MAGIC):
            raise UploadError(422, f"{client_name!r} starts like a Parquet file but its footer is "
                                   "missing: the file is truncated, export it again")
        return "parquet"
    unsupported = UploadError(
        415, f"{client_name!r} is neither CSV nor Parquet: export the month as a UTF-8 CSV "
             "with a header row, or as Parquet")
    if head.startswith(_BINARY_SIGNATURES) or b"\x00" in head:
        raise unsupported
    try:
        text = codecs.getincrementaldecoder("utf-8-sig")().decode(head, final=size <= _SNIFF_BYTES)
    except UnicodeDecodeError:
        raise unsupported from None
    header_line = text.splitlines()[0] if text.strip() else ""
    try:
        header = next(csv.reader(io.StringIO(header_line)), [])
    except csv.Error:
        header = []
    if ID_COLUMN not in {name.strip().upper() for name in header}:
        wrong_delimiter = delimiter_finding(header_line)
        if wrong_delimiter:
            raise UploadError(422, f"{client_name!r}: {wrong_delimiter.message}: "
                                   f"{wrong_delimiter.hint}")
        raise UploadError(422, f"{client_name!r} has no header row naming {ID_COLUMN}: the first "
                               f"line must be the column names of the application file "
                               f"({ID_COLUMN}, TARGET, NAME_CONTRACT_TYPE, ...)")
    return "csv"
