"""API tokens with roles: viewer (read, download) < operator (+ upload, run) < admin (+ tokens).

A token reads ``cf_<token id>_<secret>``. Only an HMAC-SHA256 of the secret, keyed with a random
per-token salt, is stored in ``api_tokens``. The token itself is shown once, when it is created.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass

from api.audit import record_event
from api.store import StateStore, utc_now
from flows.config import Settings
from flows.errors import CreditflowError

logger = logging.getLogger(__name__)

ROLES = ("viewer", "operator", "admin")
ROLE_RANK = {role: rank for rank, role in enumerate(ROLES)}

_TOKEN_PATTERN = re.compile(r"^cf_([0-9a-f]{12})_([A-Za-z0-9_-]{20,100})$")
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._@-]{0,63}$")


@dataclass(frozen=True)
class TokenRecord:
    """A stored token without its secret."""

    token_id: str
    name: str
    role: str
    created_at: str
    created_by: str
    last_used_at: str | None
    revoked_at: str | None

    def allows(self, role: str) -> bool:
        """Return whether this token's role is ``role`` or above it."""
        return ROLE_RANK[self.role] >= ROLE_RANK[role]


def _hash_secret(salt: str, secret: str) -> str:
    return hmac.new(bytes.fromhex(salt), secret.encode("ascii"), hashlib.sha256).hexdigest()


def _record(row) -> TokenRecord:
    return TokenRecord(
        token_id=row["token_id"], name=row["name"], role=row["role"],
        created_at=row["created_at"], created_by=row["created_by"],
        last_used_at=row["last_used_at"], revoked_at=row["revoked_at"],
    )


def validate_name(name: str) -> str:
    """Return the token name stripped, or raise CreditflowError naming the rule it breaks."""
    value = (name or "").strip()
    if not _NAME_PATTERN.match(value):
        raise CreditflowError(
            f"invalid token name {value[:80]!r}: use 1 to 64 letters, digits, spaces or . _ @ -, "
            "starting with a letter or digit (e.g. alice or ops-team)"
        )
    return value


def create_token(store: StateStore, name: str, role: str, created_by: str
                 ) -> tuple[TokenRecord, str]:
    """Store a new token and return its record and the token text, which is not stored."""
    if role not in ROLE_RANK:
        raise CreditflowError(f"invalid role {role!r}: choose one of {', '.join(ROLES)}")
    name = validate_name(name)
    token_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_hex(16)
    created_at = utc_now()
    with store.connect() as connection:
        connection.execute(
            "insert into api_tokens"
            " (token_id, name, role, salt, token_hash, created_at, created_by)"
            " values (?, ?, ?, ?, ?, ?, ?)",
            [token_id, name, role, salt, _hash_secret(salt, secret), created_at, created_by],
        )
    logger.info("created %s token %s for %s", role, token_id, name)
    record = TokenRecord(token_id, name, role, created_at, created_by, None, None)
    return record, f"cf_{token_id}_{secret}"


def authenticate(store: StateStore, token: str) -> TokenRecord | None:
    """Return the record of an active token matching ``token``, or None."""
    match = _TOKEN_PATTERN.match(token.strip())
    if not match:
        return None
    token_id, secret = match.groups()
    with store.connect() as connection:
        row = connection.execute(
            "select * from api_tokens where token_id = ? and revoked_at is null", [token_id]
        ).fetchone()
        if row is None:
            return None
        if not hmac.compare_digest(row["token_hash"], _hash_secret(row["salt"], secret)):
            return None
        connection.execute(
            "update api_tokens set last_used_at = ? where token_id = ?", [utc_now(), token_id]
        )
    return _record(row)


def list_tokens(store: StateStore, include_revoked: bool = True) -> list[TokenRecord]:
    query = "select * from api_tokens"
    if not include_revoked:
        query += " where revoked_at is null"
    with store.connect() as connection:
        rows = connection.execute(query + " order by created_at, token_id").fetchall()
    return [_record(row) for row in rows]


def get_token(store: StateStore, token_id: str) -> TokenRecord | None:
    with store.connect() as connection:
        row = connection.execute(
            "select * from api_tokens where token_id = ?", [token_id]).fetchone()
    return _record(row) if row else None


def revoke_token(store: StateStore, token_id: str) -> TokenRecord | None:
    """Revoke a token by id and return its record, or None when no such token exists."""
    with store.connect() as connection:
        connection.execute(
            "update api_tokens set revoked_at = ? where token_id = ? and revoked_at is null",
            [utc_now(), token_id],
        )
    return get_token(store, token_id)


def command_token(args: argparse.Namespace, settings: Settings) -> int:
    """Create, list or revoke API tokens (``creditflow token create|list|revoke``)."""
    store = StateStore.for_settings(settings)
    store.init()
    if args.action == "create":
        if not args.role or not args.name:
            raise CreditflowError(
                "token create needs --role (viewer, operator or admin) and --name, e.g. "
                "creditflow token create --role operator --name alice"
            )
        record, token = create_token(store, args.name, args.role, created_by="cli")
        record_event(store, who="cli", role=None, action="token.create",
                     target=f"{record.token_id} ({record.name}, {record.role})", outcome="ok")
        print(f"created {record.role} token {record.token_id} for {record.name}")
        print("token (shown only now; store it in a password manager):")
        print(token)
        return 0
    if args.action == "list":
        tokens = list_tokens(store)
        if not tokens:
            print("no tokens yet: creditflow token create --role admin --name YOUR_NAME")
            return 0
        print(f"{'id':<14}{'name':<24}{'role':<10}{'created':<27}{'last used':<27}revoked")
        for t in tokens:
            print(f"{t.token_id:<14}{t.name:<24}{t.role:<10}{t.created_at:<27}"
                  f"{t.last_used_at or '-':<27}{t.revoked_at or '-'}")
        return 0
    # revoke: by name, because the command line names people rather than token ids.
    if not args.name:
        raise CreditflowError("token revoke needs --name: the name the token was created with")
    active = [t for t in list_tokens(store, include_revoked=False) if t.name == args.name]
    if not active:
        raise CreditflowError(
            f"no active token named {args.name!r}: see the names with creditflow token list"
        )
    for record in active:
        revoke_token(store, record.token_id)
        record_event(store, who="cli", role=None, action="token.revoke",
                     target=f"{record.token_id} ({record.name})", outcome="ok")
        print(f"revoked token {record.token_id} ({record.name}, {record.role})")
    return 0
