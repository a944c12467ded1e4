"""The accounts' tables on either backend: users, sessions, login_failures and audit_log
(migration "accounts", hub/migrations.py). `Accounts(store)` reads with the store's reader and
writes with `HubStore._write_statements` (one transaction per call); the SQL is the same text on
SQLite and PostgreSQL, with the store's placeholder.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from ..store import HubStore
from ..store.tables import now as now_iso
from .model import Role, Scope, User

USER_COLUMNS = ("id, login, name, role, region, hall, unit, created_at, updated_at, "
                "password_changed_at, disabled_at, last_login_at")
AUDIT_COLUMNS = "id, at, event, user_id, login, role, client, what, record, detail"
AUDIT_INSERT_COLUMNS = "at, event, user_id, login, role, client, what, record, detail"
AUDIT_TEXT_MAX = 500  # what / record / detail values are cut here: the log is evidence, not storage


class UserExists(Exception):
    """A user with this login name exists already."""


@dataclass(frozen=True)
class SessionRow:
    """A stored session and its user (`password_hash` left out)."""

    token_sha256: str
    user: User
    csrf_token: str
    created_ms: int
    seen_ms: int
    client: str | None


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: str
    event: str
    user_id: int | None
    login: str | None
    role: str | None
    client: str | None
    what: str | None
    record: str | None
    detail: dict

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "at": self.at, "event": self.event, "user_id": self.user_id,
                "login": self.login, "role": self.role, "client": self.client, "what": self.what,
                "record": self.record, "detail": self.detail}


@dataclass(frozen=True)
class AuditQuery:
    """Filters of the audit log; None is "any". `since`/`until`: ISO times (UTC, as stored) or
    dates; `before`: only entries with a smaller id (the next page)."""

    event: str | None = None
    login: str | None = None
    what: str | None = None
    record: str | None = None
    since: str | None = None
    until: str | None = None
    before: int | None = None
    limit: int = 100


def _user(row: Sequence[Any]) -> User:
    (uid, login, name, role, region, hall, unit, created, updated, changed, disabled, last_login) = row
    return User(int(uid), login, name, Role(role), Scope(region, hall, unit), created, updated,
                changed, disabled, last_login)


def _cut(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.replace("\x00", "\ufffd")  # PostgreSQL text cannot hold U+0000
    return value if len(value) <= AUDIT_TEXT_MAX else value[:AUDIT_TEXT_MAX - 1] + "…"


class Accounts:
    """Accounts on one open `HubStore`."""

    def __init__(self, store: HubStore):
        self.store = store
        self.p = store.param

    # ------------------------------------------------------------------------ audit

    def audit_statement(self, event: str, *, user_id: int | None = None, login: str | None = None,
                        role: str | None = None, client: str | None = None, what: str | None = None,
                        record: str | None = None, detail: dict | None = None,
                        login_of: str | None = None) -> tuple[str, list[Any]]:
        """The INSERT of one audit entry, to run in the transaction of what it records.
        `login_of`: take user_id and role from the user with this login name (in the statement)."""
        p = self.p
        text = _cut(json.dumps(detail or {}, ensure_ascii=False, sort_keys=True))
        values = [now_iso(), event, user_id, _cut(login), role, _cut(client), _cut(what), _cut(record), text]
        if login_of is None:
            return (f"INSERT INTO audit_log ({AUDIT_INSERT_COLUMNS}) VALUES ({', '.join([p] * 9)})", values)
        return (f"INSERT INTO audit_log ({AUDIT_INSERT_COLUMNS}) SELECT {p}, {p}, id, {p}, role, {p}, {p}, {p}, {p} "
                f"FROM users WHERE login = {p}", [values[0], values[1], values[3], *values[5:], login_of])

    async def audit(self, event: str, **fields: Any) -> None:
        """Append one entry to the audit log (fields: those of `audit_statement`)."""
        await self.store._write_statements([self.audit_statement(event, **fields)])

    async def audit_entries(self, query: AuditQuery) -> list[AuditEntry]:
        """Entries matching every filter, newest (highest id) first, at most `query.limit`."""
        p, where, params = self.p, [], []
        for column, value in (("event", query.event), ("login", query.login), ("what", query.what),
                              ("record", query.record)):
            if value is not None:
                where.append(f"{column} = {p}")
                params.append(value)
        if query.since is not None:
            where.append(f"at >= {p}")
            params.append(query.since)
        if query.until is not None:
            where.append(f"at < {p}")
            params.append(query.until)
        if query.before is not None:
            where.append(f"id < {p}")
            params.append(query.before)
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        rows = await self.store._rows(f"SELECT {AUDIT_COLUMNS} FROM audit_log {clause}ORDER BY id DESC "
                                      f"LIMIT {p}", [*params, query.limit])
        return [AuditEntry(int(r[0]), r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], json.loads(r[9] or "{}"))
                for r in rows]

    # ------------------------------------------------------------------------ users

    async def create_user(self, login: str, name: str, role: Role, scope: Scope, password_hash: str,
                          *, by: str, client: str | None = None) -> User:
        """Store a new user (login already normalized); UserExists if the name is taken. The audit
        entry `user_created` names who created it (`by`: a login, "admin-token" or "cli")."""
        p, at = self.p, now_iso()
        insert = (f"INSERT INTO users (login, name, role, region, hall, unit, password_hash, created_at, "
                  f"updated_at, password_changed_at) VALUES ({', '.join([p] * 10)}) RETURNING {USER_COLUMNS}",
                  [login, name, str(role), scope.region, scope.hall, scope.unit, password_hash, at, at, at])
        audit = self.audit_statement("user_created", login=by, client=client, what="user", record=login,
                                     detail={"role": str(role), "region": scope.region, "hall": scope.hall,
                                             "unit": scope.unit})
        try:  # a taken name fails the insert and rolls the audit entry back with it
            results = await self.store._write_statements([insert, audit])
        except (sqlite3.IntegrityError, psycopg.errors.UniqueViolation) as exc:
            raise UserExists(f"a user {login!r} exists already") from exc
        return _user(results[0][0])

    async def user(self, login: str) -> User | None:
        found = await self.user_and_hash(login)
        return found[0] if found else None

    async def user_and_hash(self, login: str) -> tuple[User, str] | None:
        rows = await self.store._rows(f"SELECT {USER_COLUMNS}, password_hash FROM users WHERE login = {self.p}",
                                      (login,))
        return (_user(rows[0][:-1]), rows[0][-1]) if rows else None

    async def users(self, *, role: str | None = None, include_disabled: bool = True) -> list[User]:
        p, where, params = self.p, [], []
        if role is not None:
            where.append(f"role = {p}")
            params.append(role)
        if not include_disabled:
            where.append("disabled_at IS NULL")
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        rows = await self.store._rows(f"SELECT {USER_COLUMNS} FROM users {clause}ORDER BY login", params)
        return [_user(row) for row in rows]

    async def set_disabled(self, login: str, disabled: bool, *, by: str, client: str | None = None) -> User | None:
        """Disable (ending every session of the user) or enable again; None if there is no such user."""
        p, at = self.p, now_iso()
        value = "COALESCE(disabled_at, " + p + ")" if disabled else "NULL"
        params = [at] if disabled else []
        statements = [
            (f"UPDATE users SET disabled_at = {value}, updated_at = {p} WHERE login = {p} RETURNING {USER_COLUMNS}",
             [*params, at, login]),
            (f"DELETE FROM sessions WHERE user_id IN (SELECT id FROM users WHERE login = {p})", [login]),
            self.audit_statement("user_disabled" if disabled else "user_enabled", login=by, client=client,
                                 what="user", record=login)]
        if not disabled:
            statements.pop(1)
        if await self.user(login) is None:
            return None
        results = await self.store._write_statements(statements)
        return _user(results[0][0]) if results[0] else None

    async def set_password(self, login: str, password_hash: str, *, by: str, client: str | None = None,
                           audit: bool = True) -> User | None:
        """Replace the password hash and end every session of the user; None if no such user.
        `audit` False for a silent re-hash at sign-in (same password, newer parameters)."""
        p, at = self.p, now_iso()
        statements = [
            (f"UPDATE users SET password_hash = {p}, password_changed_at = {p}, updated_at = {p} "
             f"WHERE login = {p} RETURNING {USER_COLUMNS}", [password_hash, at, at, login])]
        if audit:
            statements += [
                (f"DELETE FROM sessions WHERE user_id IN (SELECT id FROM users WHERE login = {p})", [login]),
                self.audit_statement("password_reset", login=by, client=client, what="user", record=login)]
        if await self.user(login) is None:
            return None
        results = await self.store._write_statements(statements)
        return _user(results[0][0]) if results[0] else None

    # ------------------------------------------------------------------------ sessions

    async def start_session(self, user: User, token_sha256: str, csrf_token: str, now_ms: int,
                            client: str | None, *, replaces: str | None, expired_before_ms: int,
                            idle_before_ms: int) -> None:
        """Sign-in: store the new session, drop the one it replaces (the browser's old cookie: a
        session is never carried across a sign-in) and every expired session, clear the login
        name's failures, note the sign-in on the user and in the audit log. One transaction."""
        p = self.p
        statements: list[tuple[str, list[Any]]] = []
        if replaces is not None:
            statements.append((f"DELETE FROM sessions WHERE token_sha256 = {p}", [replaces]))
        statements += [
            (f"DELETE FROM sessions WHERE created_ms < {p} OR seen_ms < {p}", [expired_before_ms, idle_before_ms]),
            (f"INSERT INTO sessions (token_sha256, user_id, csrf_token, created_ms, seen_ms, client) "
             f"VALUES ({p}, {p}, {p}, {p}, {p}, {p})", [token_sha256, user.id, csrf_token, now_ms, now_ms, client]),
            (f"DELETE FROM login_failures WHERE subject = {p}", [f"login:{user.login}"]),
            (f"UPDATE users SET last_login_at = {p} WHERE id = {p}", [now_iso(), user.id]),
            self.audit_statement("sign_in", user_id=user.id, login=user.login, role=str(user.role), client=client)]
        await self.store._write_statements(statements)

    async def session(self, token_sha256: str) -> SessionRow | None:
        """The session with this token hash and its user, or None. Expiry is the caller's check."""
        columns = ", ".join(f"u.{c.strip()}" for c in USER_COLUMNS.split(","))
        rows = await self.store._rows(
            f"SELECT s.token_sha256, s.csrf_token, s.created_ms, s.seen_ms, s.client, {columns} "
            f"FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_sha256 = {self.p}", (token_sha256,))
        if not rows:
            return None
        token, csrf, created, seen, client, *user = rows[0]
        return SessionRow(token, _user(user), csrf, int(created), int(seen), client)

    async def touch_session(self, token_sha256: str, now_ms: int) -> None:
        await self.store._write_statements(
            [(f"UPDATE sessions SET seen_ms = {self.p} WHERE token_sha256 = {self.p}", [now_ms, token_sha256])])

    async def end_session(self, token_sha256: str, *, audit: dict[str, Any] | None = None) -> None:
        """Delete the session; `audit`: fields of a `sign_out` entry to write with it."""
        statements = [(f"DELETE FROM sessions WHERE token_sha256 = {self.p}", [token_sha256])]
        if audit is not None:
            statements.append(self.audit_statement("sign_out", **audit))
        await self.store._write_statements(statements)

    async def session_count(self, user_id: int) -> int:
        (count,), = await self.store._rows(f"SELECT COUNT(*) FROM sessions WHERE user_id = {self.p}", (user_id,))
        return int(count)

    # ------------------------------------------------------------------------ failed sign-ins

    async def failures(self, subjects: Sequence[str], since_ms: int) -> dict[str, tuple[int, int]]:
        """subject -> (failures, first_ms) for those whose window began at or after `since_ms`."""
        p = self.p
        marks = ", ".join([p] * len(subjects))
        rows = await self.store._rows(f"SELECT subject, failures, first_ms FROM login_failures "
                                      f"WHERE subject IN ({marks}) AND first_ms >= {p}", [*subjects, since_ms])
        return {subject: (int(n), int(first)) for subject, n, first in rows}

    async def record_failure(self, subjects: Sequence[str], now_ms: int, window_start_ms: int,
                             audit: dict[str, Any]) -> None:
        """Count one failed sign-in for each subject (a window that began before `window_start_ms`
        starts again at 1), write the `sign_in_failed` audit entry, and drop the counts of every
        window that ended. One transaction."""
        p = self.p
        upsert = (f"INSERT INTO login_failures (subject, failures, first_ms, last_ms) VALUES ({p}, 1, {p}, {p}) "
                  f"ON CONFLICT (subject) DO UPDATE SET "
                  f"failures = CASE WHEN login_failures.first_ms < {p} THEN 1 ELSE login_failures.failures + 1 END, "
                  f"first_ms = CASE WHEN login_failures.first_ms < {p} THEN excluded.first_ms "
                  f"ELSE login_failures.first_ms END, last_ms = excluded.last_ms")
        statements = [(upsert, [s, now_ms, now_ms, window_start_ms, window_start_ms]) for s in subjects]
        statements.append(self.audit_statement("sign_in_failed", **audit))
        # windows that ended count for nothing: gone, so names tried once do not pile up
        statements.append((f"DELETE FROM login_failures WHERE first_ms < {p}", [window_start_ms]))
        await self.store._write_statements(statements)
