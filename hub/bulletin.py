"""The monthly bulletin (月度通报, DOMAIN.md "Reports") of a hall or of a unit (the institution that
handled the services, 谁办理、谁负责): services, ratings per level, evaluation rate with and
without system defaults, satisfaction, bad reviews and defaults, in total and per window, staff
member, unit, matter (a hall's) or per hall and staff member (a unit's). Every figure comes from
the statistics rollups (hub/stats.py), so a bulletin says what GET /api/v1/stats says.

Written three ways from one `Bulletin`: the page (hub/web/dashboard.py), CSV (`write_csv`: one
table, a row per group key, parsed back with any CSV reader) and XLSX (`write_xlsx`, openpyxl:
a summary sheet and a sheet per breakdown, rates as numbers formatted as percentages).

Why openpyxl for XLSX rather than a zipfile of hand-written XML: an .xlsx is an OOXML package
(content types, relationships, a workbook, styles, shared or inline strings, XML-safe text) whose
small mistakes Excel reports as a "repair" with the data dropped; openpyxl is the reference
Python writer, pure Python (with et_xmlfile), and its write-only mode streams rows with flat
memory. The tests read the file back with openpyxl's reader and check every figure.

Spreadsheet safety: group keys (staff ids, unit and matter names) come from the halls' queue
systems. A text cell that starts with `=`, `+`, `-`, `@`, tab or CR would be a formula to Excel
(CSV injection); in the CSV such a value is written with a leading `'` (OWASP's advice), in the
XLSX every text cell is typed as text (openpyxl would otherwise store `=…` as a formula).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from hcp.protocol import LEVELS

from .dashboard import Month, Viewer, figures, visible_halls, window_order
from .ledger import Head
from .stats import Figures
from .store import HubStore

NO_KEY = "(无 none)"  # a group key the records did not carry (an unbound rating has no staff)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Column:
    header: str  # Chinese and English: the CSV header and the sheets' first row
    kind: str  # "int" or "rate"
    get: Callable[[Figures], int | float | None]


COLUMNS: tuple[Column, ...] = (
    Column("服务量 services", "int", lambda f: f.services),
    Column("未到 no-shows", "int", lambda f: f.no_shows),
    Column("评价数 ratings", "int", lambda f: f.ratings),
    *(Column(f"{LEVELS[s]} score {s}", "int", (lambda s: lambda f: f.scores[s - 1])(s)) for s in (5, 4, 3, 2, 1)),
    Column("差评 bad", "int", lambda f: f.bad),
    Column("已评价服务 rated services", "int", lambda f: f.rated),
    Column("默认评价 defaulted", "int", lambda f: f.defaulted),
    Column("评价率 evaluation rate", "rate", lambda f: f.evaluation_rate),
    Column("评价率(含默认) evaluation rate with defaults", "rate", lambda f: f.evaluation_rate_with_defaults),
    Column("满意度 satisfaction", "rate", lambda f: f.satisfaction),
    Column("满意度(含默认) satisfaction with defaults", "rate", lambda f: f.satisfaction_with_defaults),
)


@dataclass(frozen=True)
class Section:
    """A breakdown: `name` (the sheet's and the CSV's 分组 value), the key's header, the rows."""

    name: str
    title: str
    key_header: str
    rows: list[tuple[str, Figures]]


@dataclass(frozen=True)
class Bulletin:
    kind: str  # "hall" or "unit"
    subject: str  # the hall id or the unit's name
    label: str  # as people read it: the hall's name and id, or the unit
    month: Month
    total: Figures
    sections: list[Section]
    ledger_head: Head
    generated_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def filename(self) -> str:
        """The download's name without its extension: the subject as given (a unit's name is
        usually Chinese); `ascii_filename` is the fallback for clients without RFC 6266 names."""
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in self.subject)
        return f"bulletin-{self.kind}-{safe}-{self.month}"

    @property
    def ascii_filename(self) -> str:
        safe = "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "_" for c in self.subject)
        return f"bulletin-{self.kind}-{safe}-{self.month}"


def _key(value: str | None) -> str:
    return NO_KEY if value is None else value


async def hall_bulletin(store: HubStore, viewer: Viewer, hall: str, month: Month) -> Bulletin | None:
    """The hall's month: total, and per window, staff member, unit and matter. None if `viewer`
    does not see the hall."""
    halls = {h.hall: h for h in await visible_halls(store, viewer)}
    if hall not in halls:
        return None
    sections = []
    for group, title, header in (("window", "按窗口 by window", "窗口 window"),
                                 ("staff", "按工作人员 by staff member", "工号 staff id"),
                                 ("unit", "按单位 by unit", "单位 unit"),
                                 ("matter", "按事项 by matter", "事项编码 matter code")):
        rows = await figures(store, viewer, month.first, month.last, period="month", group=group, hall=hall)
        keyed = [(_key(r.key["window"] if group == "window" else next(iter(r.key.values()))), r.figures)
                 for r in rows]
        if group == "window":
            keyed.sort(key=lambda kv: window_order(kv[0]))
        sections.append(Section(group, title, header, keyed))
    totals = await figures(store, viewer, month.first, month.last, period="month", hall=hall)
    return Bulletin("hall", hall, halls[hall].label, month, Figures.total(r.figures for r in totals),
                    sections, await store.ledger_head())


async def unit_bulletin(store: HubStore, viewer: Viewer, unit: str, month: Month) -> Bulletin:
    """The unit's month across the halls `viewer` sees: total, per hall and per staff member."""
    halls = None if viewer.everything else [h.hall for h in await visible_halls(store, viewer)]
    rows = await store.unit_stats(unit, month.first.isoformat(), month.last.isoformat(), halls=halls)
    by_hall: dict[str, Figures] = {}
    by_staff: dict[str | None, Figures] = {}
    for r in rows:
        by_hall[r.hall] = by_hall.get(r.hall, Figures()) + r.figures
        by_staff[r.staff_id] = by_staff.get(r.staff_id, Figures()) + r.figures
    staff = sorted(by_staff.items(), key=lambda kv: (kv[0] is None, kv[0] or ""))
    sections = [Section("hall", "按大厅 by hall", "大厅 hall", sorted(by_hall.items())),
                Section("staff", "按工作人员 by staff member", "工号 staff id",
                        [(_key(k), f) for k, f in staff])]
    return Bulletin("unit", unit, unit, month, Figures.total(r.figures for r in rows), sections,
                    await store.ledger_head())


async def units_seen(store: HubStore, viewer: Viewer, month: Month) -> list[str]:
    """The units with figures in the month, in what `viewer` sees (for the bulletin's chooser)."""
    rows = await figures(store, viewer, month.first, month.last, period="month", group="unit")
    return sorted({r.key["unit"] for r in rows if r.key["unit"] is not None})


# ---------------------------------------------------------------------------- files


def cell_text(value: str) -> str:
    """Text for a spreadsheet cell that no spreadsheet reads as a formula."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def csv_value(column: Column, f: Figures) -> str:
    value = column.get(f)
    if value is None:
        return ""
    return f"{value:.4f}" if column.kind == "rate" else str(value)


CSV_HEADER = ("月份 month", "通报 bulletin", "对象 subject", "分组 group", "名称 key",
              *(c.header for c in COLUMNS))


def write_csv(b: Bulletin, *, bom: bool = True) -> str:
    """One table: the total (分组 `total`), then a row per key of each breakdown. Rates are
    fractions with 4 decimals (0.8125), empty where there is nothing to divide by. UTF-8 with a
    BOM by default (Excel needs it to read Chinese); lines end in CRLF (RFC 4180)."""
    out = io.StringIO()
    if bom:
        out.write("\ufeff")
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(CSV_HEADER)
    base = (str(b.month), b.kind, cell_text(b.subject))
    w.writerow((*base, "total", "", *(csv_value(c, b.total) for c in COLUMNS)))
    for s in b.sections:
        for key, f in s.rows:
            w.writerow((*base, s.name, cell_text(key), *(csv_value(c, f) for c in COLUMNS)))
    return out.getvalue()


def write_xlsx(b: Bulletin) -> bytes:
    """A workbook: sheet `总计 total` (what, when, the ledger head to record, the totals), then a
    sheet per breakdown. Numbers are numbers; rates are fractions shown as percentages."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font

    wb = Workbook(write_only=True)
    bold = Font(bold=True)

    def text(ws, value: str, *, strong: bool = False) -> WriteOnlyCell:
        c = WriteOnlyCell(ws, value=value)
        c.data_type = "s"  # never a formula, whatever it starts with
        if strong:
            c.font = bold
        return c

    def number(ws, column: Column, f: Figures) -> WriteOnlyCell:
        c = WriteOnlyCell(ws, value=column.get(f))
        if column.kind == "rate":
            c.number_format = "0.0%"
        return c

    summary = wb.create_sheet("总计 total")
    summary.column_dimensions["A"].width = 34
    summary.column_dimensions["B"].width = 70
    for label, value in (("通报 bulletin", f"{b.kind} {b.label}"), ("月份 month", str(b.month)),
                         ("生成时间 generated (UTC)", b.generated_at),
                         ("账本头 ledger head (seq:hash)", f"{b.ledger_head.seq}:{b.ledger_head.hash}")):
        summary.append([text(summary, label, strong=True), text(summary, value)])
    summary.append([])
    for column in COLUMNS:
        summary.append([text(summary, column.header, strong=True), number(summary, column, b.total)])
    for s in b.sections:
        ws = wb.create_sheet(s.title[:31])  # Excel's limit on sheet names
        ws.column_dimensions["A"].width = 24
        ws.freeze_panes = "B2"
        ws.append([text(ws, s.key_header, strong=True), *(text(ws, c.header, strong=True) for c in COLUMNS)])
        for key, f in s.rows:
            ws.append([text(ws, key), *(number(ws, c, f) for c in COLUMNS)])
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def rate_text(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def column_values(f: Figures) -> Sequence[str]:
    """The figures as the page shows them."""
    return [rate_text(c.get(f)) if c.kind == "rate" else str(c.get(f)) for c in COLUMNS]  # type: ignore[arg-type]
