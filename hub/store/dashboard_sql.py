"""What the dashboard (hub/dashboard.py, docs/dashboard.md) reads and writes beyond the other
stores' reads: the ledger verifications it ran (`ledger_checks`), the hub's own alerts of some
halls, and a unit's figures per hall and staff member from the finest statistics rollup. SQL and
row mapping shared by both backends, with the dialect's parameter mark."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import stats

LEDGER_CHECK_COLUMNS = ("id, started_at, finished_at, requested_by, ok, entries, head_seq, head_hash, "
                        "problems, result, error")
LEDGER_CHECK_INSERT_COLUMNS = LEDGER_CHECK_COLUMNS.removeprefix("id, ")


@dataclass(frozen=True)
class LedgerCheck:
    """One finished ledger verification the dashboard ran: when, for whom, and what it found
    (`result`: hub.ledger.Verification.as_dict(); `error`: the run itself failed, e.g. the
    database went away, and `ok` is False)."""

    started_at: str
    finished_at: str
    requested_by: str
    ok: bool
    entries: int
    head_seq: int
    head_hash: str
    problems: int
    result: dict = field(default_factory=dict)
    error: str | None = None
    id: int | None = None

    def insert_row(self) -> tuple:
        return (self.started_at, self.finished_at, self.requested_by, self.ok, self.entries,
                self.head_seq, self.head_hash, self.problems,
                json.dumps(self.result, sort_keys=True, separators=(",", ":"), ensure_ascii=False),
                self.error)


def ledger_check(row: Sequence[Any]) -> LedgerCheck:
    """A row of LEDGER_CHECK_COLUMNS."""
    (id_, started_at, finished_at, requested_by, ok, entries, head_seq, head_hash, problems,
     result, error) = row
    return LedgerCheck(started_at, finished_at, requested_by, bool(ok), entries, head_seq, head_hash,
                       problems, json.loads(result), error, id_)


def last_ledger_check_sql() -> str:
    return f"SELECT {LEDGER_CHECK_COLUMNS} FROM ledger_checks ORDER BY id DESC LIMIT 1"


def insert_ledger_check_sql(mark: str) -> str:
    marks = ", ".join([mark] * len(LEDGER_CHECK_INSERT_COLUMNS.split(", ")))
    return (f"INSERT INTO ledger_checks ({LEDGER_CHECK_INSERT_COLUMNS}) VALUES ({marks}) "
            f"RETURNING {LEDGER_CHECK_COLUMNS}")


def hall_alerts_sql(mark: str, halls: int | None, kind: bool) -> str:
    """The hub's own alerts (table `alerts`) of `halls` halls (None: every hall), of one kind if
    `kind`, newest first, with a LIMIT mark."""
    where = []
    if kind:
        where.append(f"kind = {mark}")
    if halls is not None:
        where.append(f"hall IN ({', '.join([mark] * halls)})" if halls else "1 = 0")
    return (f"SELECT at, kind, hall, item_key, detail FROM alerts "
            f"{'WHERE ' + ' AND '.join(where) if where else ''} ORDER BY id DESC LIMIT {mark}")


@dataclass(frozen=True)
class UnitRow:
    """A unit's figures in one hall for one staff member (None: ratings and services without one)."""

    hall: str
    staff_id: str | None
    figures: stats.Figures


def unit_rows_sql(mark: str, halls: int | None) -> str:
    """A unit's counters per (hall, staff) over days first..last (marks: unit, first, last, then
    the halls), from `stats_fine`, the only rollup that holds unit and staff together: one range
    seek per hall in its (hall, period, ...) key. `halls` None: every hall."""
    sums = ", ".join(f"CAST(SUM({c}) AS BIGINT)" for c in stats.COUNTERS)
    where = [f"unit = {mark}", f"period >= {mark}", f"period <= {mark}"]
    if halls is not None:
        where.append(f"hall IN ({', '.join([mark] * halls)})" if halls else "1 = 0")
    return (f"SELECT hall, staff_id, {sums} FROM {stats.FINE.table} WHERE {' AND '.join(where)} "
            "GROUP BY hall, staff_id")


def unit_row(row: Sequence[Any]) -> UnitRow:
    return UnitRow(row[0], None if row[1] == stats.NONE else row[1], stats.Figures.of(row[2:]))
