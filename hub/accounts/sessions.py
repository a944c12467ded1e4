"""Signing in and out, and the session behind a cookie.

A session is a random token (32 bytes, URL-safe) in an HttpOnly, SameSite=Lax cookie (Secure when
the hub is served over https: `HubSettings.secure_cookies`); the store keeps only its SHA-256, with
the session's CSRF token. A session ends `session_idle_s` after its last use or `session_max_s`
after the sign-in, whichever comes first, at sign-out, and when the user is disabled or their
password reset. A sign-in always makes a new token (the cookie the browser brought is dropped), so
a token planted before the sign-in is worth nothing after it.

Failed sign-ins are counted per login name and per client address (`throttle_wait`): past
`login_max_failures` (or `login_max_failures_address`) within `login_window_s`, sign-ins are
refused until the window ends, whether the password is right or not. The answers never tell
whether a login name exists: an unknown name, a wrong password and a disabled account get the
same message and take the same time (a dummy argon2 verification).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from ..config import HubSettings
from ..store import HubStore
from . import passwords
from .model import Principal, User, normalize_login
from .store import Accounts

SESSION_COOKIE = "hcp_session"
TOKEN_BYTES = 32
TOUCH_EVERY_MS = 60_000  # a session's last use is written at most this often (or a tenth of the idle time)

WRONG = "登录名或密码错误。Wrong login name or password."
THROTTLED = "登录失败次数过多，请 {minutes} 分钟后再试。Too many failed sign-ins: try again in {minutes} min."


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def session_alive(created_ms: int, seen_ms: int, now: int, idle_s: float, max_s: float) -> bool:
    """Is a session signed in at `created_ms` and last used at `seen_ms` still valid at `now`?"""
    return now - seen_ms < idle_s * 1000 and now - created_ms < max_s * 1000


def throttle_subjects(login: str, client: str | None) -> list[str]:
    return [f"login:{login}", f"addr:{client or '-'}"]


def throttle_wait(failures: dict[str, tuple[int, int]], login: str, client: str | None, now: int,
                  settings: HubSettings) -> float:
    """Seconds until a sign-in may be tried again (0: now). `failures`: subject -> (count, first_ms)
    of the windows still open."""
    window_ms = settings.login_window_s * 1000
    wait = 0.0
    for subject, limit in zip(throttle_subjects(login, client),
                              (settings.login_max_failures, settings.login_max_failures_address), strict=True):
        count, first = failures.get(subject, (0, now))
        if count >= limit:
            wait = max(wait, (first + window_ms - now) / 1000)
    return max(wait, 0.0)


@dataclass(frozen=True)
class SignIn:
    """What a sign-in came to: `token` and `user` on success, else the message to show (and, when
    throttled, `retry_after_s`)."""

    token: str | None = None
    user: User | None = None
    message: str | None = None
    retry_after_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.token is not None


async def sign_in(store: HubStore, settings: HubSettings, login: str, password: str, client: str | None,
                  old_token: str | None = None) -> SignIn:
    """Check the login name and password, and on success start a new session. Every outcome is
    written to the audit log (`sign_in` or `sign_in_failed` with its reason)."""
    accounts = Accounts(store)
    try:
        name = normalize_login(login)
    except ValueError:
        name = login.strip()[:64].replace("\x00", "") or "-"
    now = now_ms()
    window_start = now - int(settings.login_window_s * 1000)
    subjects = throttle_subjects(name, client)
    wait = throttle_wait(await accounts.failures(subjects, window_start), name, client, now, settings)
    failed = {"login": name, "client": client}
    if wait > 0:
        await accounts.audit("sign_in_failed", **failed, detail={"reason": "throttled"})
        return SignIn(message=THROTTLED.format(minutes=max(1, round(wait / 60 + 0.49))), retry_after_s=wait)
    found = await accounts.user_and_hash(name) if len(password) <= 1024 else None
    right = await passwords.verify_async(found[1] if found else None, password)
    if not right or found is None or found[0].disabled:
        reason = "unknown_login" if found is None else ("disabled" if found[0].disabled else "wrong_password")
        await accounts.record_failure(subjects, now, window_start, {**failed, "detail": {"reason": reason}})
        return SignIn(message=WRONG)
    user, stored = found
    if passwords.needs_rehash(stored):
        await accounts.set_password(user.login, await passwords.hash_password_async(password), by=user.login,
                                    audit=False)
    token = new_token()
    await accounts.start_session(
        user, token_hash(token), secrets.token_urlsafe(TOKEN_BYTES), now, client,
        replaces=token_hash(old_token) if old_token else None,
        expired_before_ms=now - int(settings.session_max_s * 1000),
        idle_before_ms=now - int(settings.session_idle_s * 1000))
    return SignIn(token=token, user=user)


async def principal_for(store: HubStore, settings: HubSettings, token: str | None,
                        client: str | None) -> Principal | None:
    """The principal of a session cookie, or None (no cookie, unknown, expired, or its user
    disabled). Notes the use (`seen_ms`) at most every TOUCH_EVERY_MS; an expired one is deleted."""
    if not token or len(token) > 200:
        return None
    accounts = Accounts(store)
    digest = token_hash(token)
    row = await accounts.session(digest)
    if row is None:
        return None
    now = now_ms()
    if row.user.disabled or not session_alive(row.created_ms, row.seen_ms, now, settings.session_idle_s,
                                              settings.session_max_s):
        await accounts.end_session(digest)
        return None
    if now - row.seen_ms >= min(TOUCH_EVERY_MS, settings.session_idle_s * 100):  # a tenth of idle_s
        await accounts.touch_session(digest, now)
    user = row.user
    return Principal(user.id, user.login, user.name, str(user.role), user.scope, "session", client=client,
                     csrf_token=row.csrf_token, store=store)


async def sign_out(store: HubStore, token: str | None, principal: Principal | None) -> None:
    """End the session of `token` (if any); audited as `sign_out` when `principal` is known."""
    if not token:
        return
    audit = None
    if principal is not None:
        audit = {"user_id": principal.user_id, "login": principal.login, "role": principal.role,
                 "client": principal.client}
    await Accounts(store).end_session(token_hash(token), audit=audit)
