"""People who sign in to the console, and their browser sessions.

Passwords are hashed with argon2id (argon2-cffi's defaults, RFC 9106's second recommended
parameter set), never stored or logged in clear. After ``MAX_FAILED`` wrong passwords in a row
an account is locked for ``LOCK_S`` seconds, whatever is typed meanwhile, so guessing is slow
even from many addresses. A session is a random token in an HttpOnly, SameSite=Strict cookie;
the database keeps only its SHA-256 (a leaked table opens no session) and the session's CSRF
token, which every form must send back.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from likelens.errors import InputError
from likelens.service import tables as T
from likelens.service.store import ServiceStore

ROLES = ("analyst", "admin")
MAX_FAILED = 5
LOCK_S = 15 * 60
SESSION_S = 12 * 3600
LOCKED = f"too many failed attempts: this account is locked for {LOCK_S // 60} minutes"
MIN_PASSWORD = 10
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")

_hasher = PasswordHasher()
# Verified against when the name is unknown, so a wrong name costs as long as a wrong password
# and timing does not tell which names exist.
_DUMMY = _hasher.hash(secrets.token_hex(16))


@dataclass(frozen=True)
class User:
    name: str
    role: str

    @property
    def admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True)
class Session:
    user: User
    csrf: str
    token_hash: str


class SignInRefused(Exception):
    """Wrong name or password, or a locked account: the message is safe to show."""


def create_user(store: ServiceStore, name: str, role: str, password: str) -> None:
    """Add a person; the name must be new, the role known and the password long enough."""
    if not NAME.match(name):
        raise InputError(f"user name {name!r}: letters, digits and . _ @ - only, at most 64")
    if role not in ROLES:
        raise InputError(f"role {role!r}: one of {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD:
        raise InputError(f"password: at least {MIN_PASSWORD} characters")
    with store.engine.begin() as con:
        if con.execute(sa.select(T.users.c.name).where(T.users.c.name == name)).first():
            raise InputError(f"user {name!r} exists already")
        con.execute(T.users.insert().values(name=name, pw_hash=_hasher.hash(password),
                                            role=role, created_at=time.time(), failed=0))


def list_users(store: ServiceStore) -> list[dict[str, Any]]:
    with store.engine.connect() as con:
        return [dict(r) for r in con.execute(sa.select(
            T.users.c.name, T.users.c.role, T.users.c.created_at, T.users.c.disabled_at,
            T.users.c.locked_until).order_by(T.users.c.name)).mappings()]


def disable_user(store: ServiceStore, name: str) -> int:
    """Disable a person and end their sessions; how many were disabled (0 or 1)."""
    with store.engine.begin() as con:
        n = con.execute(T.users.update().where(T.users.c.name == name,
                                               T.users.c.disabled_at.is_(None)).values(
            disabled_at=time.time())).rowcount or 0
        con.execute(T.console_sessions.delete().where(T.console_sessions.c.user_name == name))
    return int(n)


def sign_in(store: ServiceStore, name: str, password: str) -> tuple[str, Session]:
    """Check a name and password; on success a new session and its cookie token."""
    now = time.time()
    refused: str | None = None
    # The failure count must commit even though the attempt is refused: decide inside the
    # transaction, raise after it.
    with store.engine.begin() as con:
        row = con.execute(sa.select(T.users).where(T.users.c.name == name)).mappings().first()
        if row is None or row["disabled_at"] is not None:
            _verify(_DUMMY, password)
            refused = "wrong name or password"
        elif row["locked_until"] is not None and row["locked_until"] > now:
            refused = LOCKED
        elif not _verify(row["pw_hash"], password):
            failed = int(row["failed"] or 0) + 1
            locked = now + LOCK_S if failed >= MAX_FAILED else None
            con.execute(T.users.update().where(T.users.c.name == name).values(
                failed=0 if locked else failed, locked_until=locked))
            refused = LOCKED if locked else "wrong name or password"
        else:
            con.execute(T.users.update().where(T.users.c.name == name).values(
                failed=0, locked_until=None))
            token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
            th = _token_hash(token)
            con.execute(T.console_sessions.insert().values(
                token_hash=th, user_name=name, csrf=csrf, created_at=now,
                expires_at=now + SESSION_S))
            con.execute(T.console_sessions.delete().where(
                T.console_sessions.c.expires_at < now))
    if refused is not None or row is None:
        raise SignInRefused(refused or "wrong name or password")
    return token, Session(User(name, str(row["role"])), csrf, th)


def session_of(store: ServiceStore, token: str | None) -> Session | None:
    """The live session of a cookie token (None when absent, expired or its user disabled)."""
    if not token:
        return None
    th = _token_hash(token)
    s, u = T.console_sessions, T.users
    with store.engine.connect() as con:
        row = con.execute(sa.select(s.c.csrf, s.c.expires_at, u.c.name, u.c.role,
                                    u.c.disabled_at).join(u, u.c.name == s.c.user_name).where(
            s.c.token_hash == th)).mappings().first()
    if row is None or row["expires_at"] < time.time() or row["disabled_at"] is not None:
        return None
    return Session(User(str(row["name"]), str(row["role"])), str(row["csrf"]), th)


def sign_out(store: ServiceStore, session: Session) -> None:
    with store.engine.begin() as con:
        con.execute(T.console_sessions.delete().where(
            T.console_sessions.c.token_hash == session.token_hash))


def csrf_ok(session: Session, sent: str | None) -> bool:
    return bool(sent) and hmac.compare_digest(session.csrf, str(sent))


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _verify(pw_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(pw_hash, password)
    except (VerificationError, InvalidHashError):
        return False
