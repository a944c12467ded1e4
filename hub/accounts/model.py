"""Who may do what: the roles, a person's scope, the `Principal` every request acts as, and the
scope check `can_see`. Plain data and pure functions (no store, no FastAPI): the cases, dashboard
and phone modules take a Principal as an argument and ask these.

Roles (docs/accounts.md has the table):
- `operator`    runs the hub for its scope: halls, devices, dashboard, bulletins.
- `handler`     a unit's handler (承办人) of bad-review cases: only its unit's cases, never a rater's
                name or phone number unmasked. Must have a unit in its scope.
- `supervisor`  oversees the handling in its scope: decides appeals, sees overdue cases.
- `auditor`     reads the audit log; sees figures, not personal data.
The admin token acts as `admin`: every role's rights, whole hub (scripts and bootstrap).

Scope: `region`, `hall`, `unit`, each None for "all". A record is in a person's scope when every
part the person has set equals the record's (`can_see`). A record that lacks a part the person is
limited by (a device has no unit; a hall in no region) is out of that person's scope.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..store import HubStore


class Role(StrEnum):
    OPERATOR = "operator"
    HANDLER = "handler"
    SUPERVISOR = "supervisor"
    AUDITOR = "auditor"


ADMIN = "admin"  # the role the admin token acts as; no user has it
ROLE_LABELS = {Role.OPERATOR: "运维人员 operator", Role.HANDLER: "承办人 unit handler",
               Role.SUPERVISOR: "督办人 supervisor", Role.AUDITOR: "审计员 auditor", ADMIN: "管理令牌 admin token"}

# Who may read a rater's real name and phone number unmasked (each read is audited: hub.accounts.audit).
# Handlers never (the rule); auditors read the audit log, not the data.
PERSONAL_DATA_ROLES = frozenset({Role.OPERATOR, Role.SUPERVISOR, ADMIN})

# A login name: ASCII letters and digits, _ . @ - (a staff number, pinyin, an e-mail address);
# stored lower-case. The person's name in any script is the display name.
LOGIN_PATTERN = r"^[A-Za-z0-9_.@-]{1,64}$"
PASSWORD_MIN = 10  # characters; long passphrases beat complexity rules (NIST SP 800-63B)
PASSWORD_MAX = 1024  # bounds the hashing work one request can ask for
PASSWORD_PATTERN = r"^[^\x00]*$"  # any text but U+0000
TEXT_MAX = 200  # display name and unit (a service's `unit` is at most 200 characters too)
# A display name or unit: no control characters, no space at either end.
TEXT_PATTERN = (r"^[^\s\x00-\x1f\x7f-\x9f](?:[^\x00-\x1f\x7f-\x9f]{0,%d}[^\s\x00-\x1f\x7f-\x9f])?$"
                % (TEXT_MAX - 2))
_LOGIN = re.compile(LOGIN_PATTERN)
_PASSWORD = re.compile(PASSWORD_PATTERN)
_TEXT = re.compile(TEXT_PATTERN)
_SURROGATE = re.compile("[\ud800-\udfff]")  # UTF-8 cannot carry one: no database or hash takes it


class InvalidField(ValueError):
    """A field of an account that cannot be stored: `field` names it, the message says why."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


def normalize_login(login: str) -> str:
    """The stored form of a login name: NFKC (full-width ＷＡＮＧ is wang), stripped, lower-case.
    InvalidField if it is not one."""
    value = unicodedata.normalize("NFKC", login).strip().lower()
    if not _LOGIN.match(value):
        raise InvalidField("login", "a login name is 1-64 ASCII letters, digits, '_', '.', '@' or '-'")
    return value


def check_password(password: str) -> str:
    """`password` if it may be set; InvalidField with the reason otherwise."""
    if len(password) < PASSWORD_MIN:
        raise InvalidField("password", f"a password has at least {PASSWORD_MIN} characters")
    if len(password) > PASSWORD_MAX:
        raise InvalidField("password", f"a password has at most {PASSWORD_MAX} characters")
    if not _PASSWORD.match(password) or _SURROGATE.search(password):
        raise InvalidField("password", "a password cannot contain U+0000 or a lone surrogate")
    return password


def clean_text(value: str | None, what: str) -> str | None:
    """A display name or scope part: stripped, None when empty; InvalidField if too long or with
    control characters."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if not _TEXT.match(value) or _SURROGATE.search(value):
        raise InvalidField(what, f"at most {TEXT_MAX} characters, no control characters")
    return value


@dataclass(frozen=True)
class Scope:
    """Where a person may look: None in a part is "all"."""

    region: str | None = None
    hall: str | None = None
    unit: str | None = None

    @property
    def whole_hub(self) -> bool:
        return self.region is None and self.hall is None and self.unit is None

    def label(self) -> str:
        parts = [f"{name} {value}" for name, value in
                 (("区域 region", self.region), ("大厅 hall", self.hall), ("单位 unit", self.unit)) if value]
        return " · ".join(parts) or "全部 whole hub"


def check_scope(role: str, scope: Scope) -> Scope:
    """`scope` if a person of `role` may have it; ValueError otherwise (a handler needs a unit)."""
    if role == Role.HANDLER and scope.unit is None:
        raise InvalidField("unit", "a unit handler needs a unit (the `unit` services carry)")
    return scope


@dataclass(frozen=True)
class User:
    """A stored account, without its password hash."""

    id: int
    login: str
    name: str
    role: Role
    scope: Scope
    created_at: str
    updated_at: str
    password_changed_at: str
    disabled_at: str | None
    last_login_at: str | None

    @property
    def disabled(self) -> bool:
        return self.disabled_at is not None

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "login": self.login, "name": self.name, "role": str(self.role),
                "region": self.scope.region, "hall": self.scope.hall, "unit": self.scope.unit,
                "disabled": self.disabled, "disabled_at": self.disabled_at, "created_at": self.created_at,
                "updated_at": self.updated_at, "password_changed_at": self.password_changed_at,
                "last_login_at": self.last_login_at}


@dataclass(frozen=True)
class Principal:
    """The person a request acts for: a signed-in user (`via` "session"), the admin token (`via`
    "admin_token", role ADMIN, whole hub, `user_id` None), or the command line (`via` "cli").

    `csrf_token`: the session's token for forms (hub.accounts.csrf); `client`: the request's
    address. `store` is where hub.accounts.audit writes what this principal reads."""

    user_id: int | None
    login: str
    name: str
    role: str
    scope: Scope
    via: str
    client: str | None = None
    csrf_token: str | None = field(default=None, repr=False)
    store: HubStore | None = field(default=None, repr=False, compare=False)

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN

    @property
    def role_label(self) -> str:
        return ROLE_LABELS.get(self.role, self.role)  # type: ignore[call-overload]

    def has_role(self, *roles: str) -> bool:
        """True if the principal has one of `roles`; the admin token has every role."""
        return self.is_admin or self.role in roles

    @property
    def may_unmask(self) -> bool:
        """May this principal read a rater's real name and phone number unmasked? (Audit each read.)"""
        return self.role in PERSONAL_DATA_ROLES

    def scope_filter(self) -> dict[str, str]:
        """The parts of the scope that limit a list: {"region": …, "hall": …, "unit": …}, only
        those set. Apply each to a query (`WHERE region = …`), or check rows with `can_see`."""
        if self.is_admin:
            return {}
        return {k: v for k, v in (("region", self.scope.region), ("hall", self.scope.hall),
                                  ("unit", self.scope.unit)) if v is not None}


def can_see(principal: Principal, *, region: str | None = None, hall: str | None = None,
            unit: str | None = None) -> bool:
    """Is a record of this region, hall and unit in the principal's scope? Pass every part the
    record has (the hall's region: `HubStore.hall_region`). A part the principal is limited by and
    the record lacks (None) makes it out of scope. The admin token sees everything."""
    if principal.is_admin:
        return True
    s = principal.scope
    return ((s.region is None or s.region == region) and (s.hall is None or s.hall == hall)
            and (s.unit is None or s.unit == unit))


def admin_principal(client: str | None = None, store: HubStore | None = None) -> Principal:
    """The principal of a request that carries the admin token."""
    return Principal(None, "admin-token", "管理令牌 admin token", ADMIN, Scope(), "admin_token",
                     client=client, store=store)
