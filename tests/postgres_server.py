"""A throwaway PostgreSQL server for tests, built from Debian's postgresql package.

`PostgresServer.start()` runs `initdb` into a new temporary directory, starts `postgres` on a
free port of 127.0.0.1 (and on a Unix socket in that directory) with `trust` authentication,
and creates one database. `stop()` stops the server and removes the directory.

PostgreSQL refuses to run as root, so when the tests run as root (as CI does) the server runs
as the `postgres` user that Debian's package creates, or as `nobody` when that user is missing.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# Debian installs each major version's server binaries under /usr/lib/postgresql/<major>/bin.
DEBIAN_BINDIR_PATTERN = "/usr/lib/postgresql/*/bin"
SUPERUSER = "creditflow"
DATABASE = "creditflow"
START_TIMEOUT_SECONDS = 60


class PostgresServerError(RuntimeError):
    """The test server could not be created, started or stopped."""


def find_bindir() -> Path | None:
    """Return the directory of `initdb` and `postgres`, or None when PostgreSQL is not installed.

    `CREDITFLOW_PG_BINDIR` overrides the search. Otherwise the newest Debian major version wins,
    then the directory of an `initdb` found on PATH.
    """
    override = os.environ.get("CREDITFLOW_PG_BINDIR")
    if override:
        return Path(override) if (Path(override) / "initdb").exists() else None
    candidates = [Path(path) for path in glob.glob(DEBIAN_BINDIR_PATTERN)
                  if (Path(path) / "initdb").exists()]
    if candidates:
        return max(candidates, key=lambda path: _major_version(path.parent.name))
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


def _major_version(name: str) -> int:
    return int(name) if name.isdigit() else -1


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server_account() -> pwd.struct_passwd | None:
    """Return the account to run the server as when running as root, else None (run as self)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise PostgresServerError("running as root, and neither a 'postgres' nor a 'nobody' user "
                              "exists to run PostgreSQL as; create one (useradd postgres)")


@dataclass(frozen=True)
class ConnectionInfo:
    host: str
    port: int
    user: str
    dbname: str
    socket_dir: str

    @property
    def dsn(self) -> str:
        """URL form, accepted by psycopg and libpq: postgresql://user@host:port/dbname."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.dbname}"

    def dbt_env(self, schema: str = "public") -> dict[str, str]:
        """Environment variables that point profiles.yml's `postgres` target at this server."""
        return {
            "CREDITFLOW_DBT_TARGET": "postgres",
            "CREDITFLOW_PG_HOST": self.host,
            "CREDITFLOW_PG_PORT": str(self.port),
            "CREDITFLOW_PG_USER": self.user,
            "CREDITFLOW_PG_PASSWORD": "",
            "CREDITFLOW_PG_DBNAME": self.dbname,
            "CREDITFLOW_PG_SCHEMA": schema,
        }


class PostgresServer:
    """One `postgres` process with its own data directory, for a test session."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.account = server_account()
        self.root: Path | None = None
        self.process: subprocess.Popen | None = None
        self.info: ConnectionInfo | None = None

    def start(self) -> ConnectionInfo:
        # mkdtemp under the system temp dir, not pytest's tmp_path: pytest's directories are
        # private to the current user, and the server user must reach its data directory. The
        # path also stays short, below the 107-byte limit of a Unix socket path.
        self.root = Path(tempfile.mkdtemp(prefix="creditflow-pg-"))
        data_dir = self.root / "data"
        data_dir.mkdir()
        self._give_to_server_account(self.root)
        self._give_to_server_account(data_dir)

        self._run([str(self.bindir / "initdb"), "--pgdata", str(data_dir), "--username",
                   SUPERUSER, "--auth", "trust", "--encoding", "UTF8", "--no-locale",
                   "--no-sync"])

        port = free_port()
        log = self.root / "server.log"
        self._give_to_server_account(log, create=True)
        # Durability settings are off: the data is thrown away after the tests.
        command = [str(self.bindir / "postgres"), "-D", str(data_dir), "-p", str(port),
                   "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.root}",
                   "-c", "fsync=off", "-c", "synchronous_commit=off",
                   "-c", "full_page_writes=off", "-c", "max_connections=50"]
        with log.open("a") as output:
            self.process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT,
                                            **self._account_arguments())
        self.info = ConnectionInfo(host="127.0.0.1", port=port, user=SUPERUSER,
                                   dbname=DATABASE, socket_dir=str(self.root))
        self._wait_until_ready(log)
        self._run([str(self.bindir / "createdb"), "--host", "127.0.0.1", "--port", str(port),
                   "--username", SUPERUSER, DATABASE])
        return self.info

    def create_database(self, name: str) -> ConnectionInfo:
        """Create another empty database on this server, so a test can start from nothing."""
        if self.info is None:
            raise PostgresServerError("the server is not running; call start() first")
        self._run([str(self.bindir / "createdb"), "--host", "127.0.0.1", "--port",
                   str(self.info.port), "--username", SUPERUSER, name])
        return ConnectionInfo(host=self.info.host, port=self.info.port, user=SUPERUSER,
                              dbname=name, socket_dir=self.info.socket_dir)

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its directory. A second call does nothing."""
        if self.process is not None and self.process.poll() is None:
            # SIGINT is PostgreSQL's fast shutdown: it ends sessions and stops at once.
            self.process.send_signal(2)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def _wait_until_ready(self, log: Path) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            if self.process.poll() is not None:
                raise PostgresServerError(
                    f"postgres exited with code {self.process.returncode} at start:\n"
                    f"{log.read_text(errors='replace')[-4000:]}")
            ready = subprocess.run(
                [str(self.bindir / "pg_isready"), "--host", "127.0.0.1", "--port",
                 str(self.info.port), "--username", SUPERUSER, "--dbname", "postgres"],
                capture_output=True, check=False)
            if ready.returncode == 0:
                return
            if time.monotonic() > deadline:
                self.stop()
                raise PostgresServerError(
                    f"postgres did not accept connections within {START_TIMEOUT_SECONDS} s:\n"
                    f"{log.read_text(errors='replace')[-4000:]}")
            time.sleep(0.2)

    def _run(self, command: list[str]) -> None:
        result = subprocess.run(command, capture_output=True, text=True, check=False,
                                **self._account_arguments())
        if result.returncode != 0:
            raise PostgresServerError(f"{' '.join(command)} failed with code "
                                      f"{result.returncode}:\n{result.stdout}{result.stderr}")

    def _account_arguments(self) -> dict:
        environment = {key: value for key, value in os.environ.items()
                       if not key.startswith(("PG", "LC_"))}
        environment["LANG"] = "C.UTF-8"
        if self.account is None:
            return {"env": environment}
        environment["HOME"] = str(self.root)
        environment["USER"] = self.account.pw_name
        # The server process must not start in a directory its user cannot read.
        return {"env": environment, "user": self.account.pw_uid,
                "group": self.account.pw_gid, "extra_groups": [], "cwd": str(self.root)}

    def _give_to_server_account(self, path: Path, create: bool = False) -> None:
        if create:
            path.touch()
        if self.account is not None:
            os.chown(path, self.account.pw_uid, self.account.pw_gid)
