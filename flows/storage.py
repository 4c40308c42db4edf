"""Storage locations given as URLs: a local folder by default, ``s3://bucket/prefix`` when set.

``CREDITFLOW_INBOX_URL`` is where other systems drop the month's files, ``CREDITFLOW_OUTPUT_URL``
is where the watcher publishes predictions and reports, ``CREDITFLOW_LANDED_URL`` keeps the
accepted originals and ``CREDITFLOW_QUARANTINE_URL`` the rejected files with their reports. All
are opened by fsspec, and by s3fs for ``s3://`` URLs. The S3 endpoint, region and credentials
come from the standard AWS variables
(``AWS_ENDPOINT_URL`` or ``AWS_ENDPOINT_URL_S3``, ``AWS_REGION`` or ``AWS_DEFAULT_REGION``,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_PROFILE``), which
botocore reads itself. This module never logs them, and it rejects a URL that contains them
(``s3://key:secret@bucket``) without showing them.

Writes are atomic for readers of the location. A local file is written under a hidden temporary
name in the target folder, then renamed. An S3 object is uploaded complete (one PUT, or a multipart
upload that S3 publishes only when it is completed), so a reader sees the old object or the new one.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import fsspec

from flows.config import Settings
from flows.errors import CreditflowError

logger = logging.getLogger(__name__)


class StorageError(CreditflowError):
    """A storage location could not be read or written; the message names the URL."""


@dataclass(frozen=True)
class StoredFile:
    """One file directly under a location, as a listing shows it."""

    name: str
    size: int
    # Changes whenever the content may have changed: the mtime of a local file, the ETag and
    # last-modified time of an S3 object.
    version: str


# fsspec protocols a location may use: local paths and S3. Other schemes (ftp, http, ...) are
# rejected before fsspec opens them, because opening an ftp:// location already resolves its host.
SUPPORTED_PROTOCOLS = ("file", "local", "s3", "s3a")


def check_scheme(url: str, setting: str | None = None) -> None:
    """Raise StorageError when ``url`` is neither a local path nor a file:// or s3:// URL."""
    protocol = fsspec.utils.get_protocol(url)
    if protocol in SUPPORTED_PROTOCOLS:
        return
    location = f"{setting}={redact_url(url)}" if setting else f"storage location {redact_url(url)}"
    raise StorageError(f"{location} uses the unsupported scheme {protocol}://: use a local path, "
                       "a file:// URL or an s3://bucket/prefix URL")


def _configured_url(url: str | None, setting: str, default: Path) -> str:
    """Return ``url`` after checking its scheme, or the local ``default`` folder when unset."""
    if url:
        check_scheme(url, setting)
        return url
    return str(default)


def inbox_url(settings: Settings) -> str:
    """Return the URL of the inbox the watcher lists (default: the local inbox folder)."""
    return _configured_url(settings.inbox_url, "CREDITFLOW_INBOX_URL", settings.inbox)


def output_url(settings: Settings) -> str:
    """Return the URL the watcher publishes outputs to (default: the local exports folder)."""
    return _configured_url(settings.output_url, "CREDITFLOW_OUTPUT_URL", settings.exports)


def landed_url(settings: Settings) -> str:
    """Return the URL that keeps accepted originals (default: the local landed folder)."""
    return _configured_url(settings.landed_url, "CREDITFLOW_LANDED_URL", settings.landed)


def quarantine_url(settings: Settings) -> str:
    """Return the URL that keeps rejected files and reports (default: the local quarantine)."""
    return _configured_url(settings.quarantine_url, "CREDITFLOW_QUARANTINE_URL",
                           settings.quarantine)


def redact_url(url: str) -> str:
    """Return ``url`` without the user name, password and query string it may contain."""
    parts = urlsplit(url)
    if not parts.scheme or len(parts.scheme) == 1:  # a local path (or a Windows drive letter)
        return url
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _s3_options() -> dict[str, Any]:
    client: dict[str, str] = {}
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        client["endpoint_url"] = endpoint
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        client["region_name"] = region
    return {"client_kwargs": client} if client else {}


class Location:
    """A folder or an object-store prefix, opened from its URL."""

    def __init__(self, url: str) -> None:
        opened = url.rstrip("/") or url
        # The URL shown in logs, messages and load_log, without credentials.
        self.url = redact_url(opened)
        protocol = fsspec.utils.get_protocol(opened)
        check_scheme(opened)
        if self.url != opened and not self.url.startswith("file:"):
            raise StorageError(f"storage location {self.url} has credentials or options in its "
                               "URL: remove them and set AWS_ACCESS_KEY_ID and "
                               "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) instead")
        options = _s3_options() if protocol in ("s3", "s3a") else {}
        try:
            self.fs, self.root = fsspec.core.url_to_fs(opened, **options)
        except (ImportError, ValueError) as error:
            raise StorageError(f"cannot open storage location {self.url}: {error}. Use a local "
                               "path or an s3://bucket/prefix URL") from error
        self.is_local = protocol in ("file", "local")
        self.root = self.root.rstrip("/")

    def __str__(self) -> str:
        return self.url

    def path_of(self, name: str) -> str:
        """Return the URL of the file ``name`` in this location."""
        return f"{self.url}/{name}"

    def list_files(self) -> list[StoredFile]:
        """List the files directly under the location (not its subfolders), by name."""
        if self.is_local and not Path(self.root).is_dir():
            return []
        self.fs.invalidate_cache(self.root)
        try:
            entries = self.fs.ls(self.root, detail=True)
        except FileNotFoundError as error:
            # s3fs raises this both for a prefix with no object yet and for a missing bucket.
            bucket = self.root.split("/", 1)[0]
            if not self.is_local and not self.fs.exists(bucket):
                raise StorageError(f"bucket {bucket} of {self.url} not found: create it or "
                                   "correct the URL") from error
            return []
        except Exception as error:  # noqa: BLE001 - botocore errors are not OSError subclasses
            raise StorageError(f"listing {self.url} failed: {type(error).__name__}: {error}. "
                               "Check the URL, the bucket and the AWS settings") from error
        files = []
        for entry in entries:
            if entry.get("type") != "file":
                continue
            name = entry["name"].rstrip("/").rsplit("/", 1)[-1]
            if self.is_local:
                version = repr(entry.get("mtime"))
            else:
                version = f"{entry.get('ETag', '')}@{entry.get('LastModified', '')}"
            files.append(StoredFile(name=name, size=int(entry.get("size") or 0), version=version))
        return sorted(files, key=lambda item: item.name)

    def download(self, name: str, target: Path) -> None:
        """Copy the file ``name`` to the local ``target``, which appears complete or not at all."""
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
        source = f"{self.root}/{name}"
        try:
            if self.is_local:
                shutil.copyfile(source, temporary)
            else:
                self.fs.get_file(source, str(temporary))
            os.replace(temporary, target)
        except OSError as error:
            raise StorageError(f"copying {self.path_of(name)} to {target} failed: {error}") \
                from error
        finally:
            temporary.unlink(missing_ok=True)

    def upload(self, source: Path, name: str) -> str:
        """Publish the local file ``source`` as ``name`` atomically; return its URL."""
        target = f"{self.root}/{name}"
        try:
            if self.is_local:
                folder = Path(self.root)
                folder.mkdir(parents=True, exist_ok=True)
                if folder.joinpath(name).resolve() == source.resolve():
                    return self.path_of(name)
                temporary = folder / f".{name}.{uuid.uuid4().hex}.part"
                try:
                    shutil.copyfile(source, temporary)
                    os.replace(temporary, folder / name)
                finally:
                    temporary.unlink(missing_ok=True)
            else:
                # S3 shows an object only once its upload is complete, so no temporary key.
                self.fs.put_file(str(source), target)
        except OSError as error:
            raise StorageError(f"writing {source} to {self.path_of(name)} failed: {error}") \
                from error
        logger.info("published %s to %s", source.name, self.path_of(name))
        return self.path_of(name)

    def exists(self, name: str) -> bool:
        """Return True when the file ``name`` (a path relative to the location) exists."""
        target = f"{self.root}/{name}"
        try:
            if self.is_local:
                return Path(target).is_file()
            self.fs.invalidate_cache(target)
            return bool(self.fs.exists(target))
        except Exception as error:  # noqa: BLE001 - botocore errors are not OSError subclasses
            raise StorageError(f"checking {self.path_of(name)} failed: {type(error).__name__}: "
                               f"{error}. Check the URL, the bucket and the AWS settings") \
                from error

    def put_object(self, source: Path, name: str) -> str:
        """Store the local file ``source`` as ``name`` in an object store; return its URL.

        ``name`` may contain ``/``. The object appears complete or not at all (see the module
        documentation). For a local location use :meth:`upload`.
        """
        try:
            self.fs.put_file(str(source), f"{self.root}/{name}")
        except Exception as error:  # noqa: BLE001 - botocore errors are not OSError subclasses
            raise StorageError(f"writing {source.name} to {self.path_of(name)} failed: "
                               f"{type(error).__name__}: {error}. Check the bucket, its "
                               "permissions and the AWS settings") from error
        return self.path_of(name)

    def write_bytes(self, name: str, data: bytes) -> str:
        """Write ``data`` as the file ``name`` atomically; return its URL (local: its path)."""
        target = f"{self.root}/{name}"
        try:
            if self.is_local:
                path = Path(target)
                path.parent.mkdir(parents=True, exist_ok=True)
                temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
                try:
                    temporary.write_bytes(data)
                    os.replace(temporary, path)
                finally:
                    temporary.unlink(missing_ok=True)
                return target
            self.fs.pipe_file(target, data)
        except Exception as error:  # noqa: BLE001 - botocore errors are not OSError subclasses
            raise StorageError(f"writing {self.path_of(name)} failed: {type(error).__name__}: "
                               f"{error}. Check the location, its permissions and, for S3, the "
                               "AWS settings") from error
        return self.path_of(name)
