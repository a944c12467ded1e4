"""The navigation every page shows, and the home page's list: one `NavLink` per page a role may
use. Other modules add their pages by appending a line to NAV (order = order shown)."""

from __future__ import annotations

from dataclasses import dataclass

from ..accounts.model import Principal, Role

EVERYONE = frozenset(Role)


@dataclass(frozen=True)
class NavLink:
    path: str
    label: str
    roles: frozenset[str]  # who sees the link (the admin token never signs in to pages)
    description: str = ""  # shown on the home page


NAV: tuple[NavLink, ...] = (
    NavLink("/", "首页 Home", EVERYONE),
    NavLink("/audit", "审计日志 Audit log", frozenset({Role.AUDITOR}),
            "登录、登出及个人信息查阅记录 · sign-ins, sign-outs and every read of a rater's personal data"),
)


def links_for(principal: Principal | None) -> list[NavLink]:
    """The links `principal` may follow (none when signed out)."""
    if principal is None:
        return []
    return [link for link in NAV if principal.has_role(*link.roles)]
