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
    whole_hub: bool = False  # only for people whose scope is the whole hub (the audit log)


NAV: tuple[NavLink, ...] = (
    NavLink("/", "首页 Home", EVERYONE),
    NavLink("/audit", "审计日志 Audit log", frozenset({Role.AUDITOR}),
            "登录、登出及个人信息查阅记录 · sign-ins, sign-outs and every read of a rater's personal data",
            whole_hub=True),
    NavLink("/dashboard", "运维看板 Dashboard", frozenset({Role.OPERATOR, Role.SUPERVISOR, Role.AUDITOR}),
            "设备状态、评价率与满意度、账本校验 · devices, evaluation rate and satisfaction, ledger verification"),
    NavLink("/dashboard/bulletin", "月度通报 Bulletins", frozenset({Role.OPERATOR, Role.SUPERVISOR, Role.AUDITOR}),
            "各大厅、各单位的月度通报（HTML、CSV、XLSX）· monthly bulletins per hall and unit"),
    NavLink("/results", "公开结果 Public results", EVERYONE, "公众可见的评价结果 · what the public sees"),
    NavLink("/cases", "差评工单 Cases", frozenset({Role.HANDLER, Role.OPERATOR, Role.SUPERVISOR}),
            "每个差评的转办、回访、整改与申诉 · every bad review: routing, callbacks, rectification, appeals"),
    NavLink("/cases/ledger", "整改台账 Ledger", frozenset({Role.HANDLER, Role.OPERATOR, Role.SUPERVISOR}),
            "限期整改的复杂差评 · complex cases rectified by a set date"),
    NavLink("/cases/rates", "回访率 Rates", frozenset({Role.HANDLER, Role.OPERATOR, Role.SUPERVISOR, Role.AUDITOR}),
            "各单位实名差评回访率与整改率 · callback and rectification rates per unit"),
)


def links_for(principal: Principal | None) -> list[NavLink]:
    """The links `principal` may follow (none when signed out)."""
    if principal is None:
        return []
    return [link for link in NAV if principal.has_role(*link.roles)
            and (principal.scope.whole_hub or principal.is_admin or not link.whole_hub)]
