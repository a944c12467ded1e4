"""Replay a queue system's CSV export into the gateway's webhook (docs/gateway.md, "CSV replay").

Many halls' queue systems (排队叫号系统) can export their event log as CSV but cannot call a webhook,
or were cut off from the gateway for a while. `hcp gateway replay-csv FILE` reads such an export,
maps its columns (English or Chinese headers), checks every row with the webhook's own decoder,
and posts the good rows to `POST /api/v1/queue/events` in time order, so the services reach the
hub (the evaluation rate and the default rating need every delivered service).

- **Idempotent.** An export without an event-id column gets ids derived from the row (kind, time,
  ticket, window), so replaying a file again, or an export that overlaps an earlier one, answers
  `duplicate` for what was sent before and changes nothing.
- **A replay is the past.** Events are sent with `"replay": true` (docs/protocol.md): the gateway
  records them and forwards the services, but opens no rating session (no device pops up a prompt
  for a citizen who left hours ago) and does not take them as news of who is at a window now.
  `--live` sends them as live events instead, for an export read as it is written.
- **Bad rows** are reported with their line number and reason (the webhook's reason vocabulary),
  counted, and skipped; the other rows are sent. A row the gateway refuses (400) is reported the
  same way. A wrong token, or a gateway that stays unreachable, stops the replay (exit status 2):
  later events of a ticket must not overtake the earlier ones, and running it again is safe.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx

from hcp.protocol import ProtocolError, decode_queue_event

EVENTS_PATH = "/api/v1/queue/events"
DEFAULT_TZ = "+08:00"  # China Standard Time: exports usually write local times without an offset
HTTP_TIMEOUT_S = 10.0  # one event is handled in milliseconds; longer means the gateway is stuck
RETRIES = 6  # attempts per row while the gateway is unreachable or answers 5xx
RETRY_FIRST_S, RETRY_MAX_S = 0.5, 8.0  # doubling pause between them (15.5 s in all)
DELIMITERS = ",\t;|"
HEADER_SEARCH = 10  # non-empty lines looked at for the header (exports may start with a title)

# field -> accepted header names, compared after `_norm` (case, spaces, `_`, `-` ignored)
COLUMNS: dict[str, tuple[str, ...]] = {
    "event_id": ("event_id", "id", "事件编号", "事件id", "流水号"),
    "type": ("type", "event", "event_type", "kind", "status", "事件", "事件类型", "状态", "动作"),
    "at": ("at", "time", "event_time", "timestamp", "datetime", "时间", "事件时间", "发生时间"),
    "ticket": ("ticket", "ticket_no", "ticket_number", "票号", "排队号", "号码", "取号号码"),
    "window": ("window", "window_no", "counter", "窗口", "窗口号"),
    "staff_id": ("staff_id", "staff", "staff_no", "工号", "人员工号", "员工工号"),
    "staff_name": ("staff_name", "姓名", "工作人员", "人员姓名", "办理人"),
    "matter_code": ("matter_code", "matter", "事项编码", "事项代码"),
    "matter_name": ("matter_name", "事项名称"),
    "case_no": ("case_no", "case_number", "办件编号", "办件号"),
    "unit": ("unit", "department", "办理单位", "部门", "单位"),
}
REQUIRED = ("type", "at", "ticket", "window")

# event kind as exports write it -> the webhook's `type`
KINDS: dict[str, str] = {
    **{k: "called" for k in ("called", "call", "叫号", "呼叫", "已叫号")},
    **{k: "started" for k in ("started", "start", "serving", "开始办理", "开始", "办理中", "开始服务")},
    **{k: "accepted" for k in ("accepted", "accept", "受理", "已受理")},
    **{k: "finished" for k in ("finished", "finish", "done", "completed", "办结", "已办结", "完成",
                               "办理完成", "结束")},
    **{k: "no_show" for k in ("no_show", "noshow", "过号", "弃号", "未到", "空号")},
}
TIME_FORMATS = ("%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M",
                "%Y%m%d%H%M%S")


class ReplayError(Exception):
    """The replay cannot go on (unreadable file, no usable header, refused token, no gateway)."""


@dataclass(frozen=True)
class Problem:
    line: int
    reason: str  # the webhook's vocabulary: missing_field:x, bad_field:x, ...
    detail: str = ""

    def text(self, name: str) -> str:
        return f"{name}:{self.line}: {self.reason}" + (f" ({self.detail})" if self.detail else "")


@dataclass(frozen=True)
class Row:
    line: int
    event: dict[str, Any]  # the webhook body, already checked by the webhook's decoder
    at: datetime


@dataclass
class Export:
    """A read export: the good rows (in time order unless asked otherwise) and the bad ones."""

    rows: list[Row]
    bad: list[Problem]
    columns: dict[str, str]  # field -> the header it came from
    ignored: list[str]  # headers mapped to nothing
    encoding: str
    skipped: int = 0  # non-empty lines before the header (a title)


@dataclass
class Summary:
    file: str
    rows: int = 0  # data rows read (blank lines not counted)
    accepted: int = 0
    duplicate: int = 0
    bad: int = 0  # refused here: the gateway never saw them
    rejected: int = 0  # refused by the gateway (400)
    problems: list[Problem] = field(default_factory=list)
    dry_run: bool = False  # checked only: nothing was sent

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["problems"] = [asdict(p) for p in self.problems]
        return out

    def text(self) -> str:
        lines = ", ".join(str(p.line) for p in self.problems[:20])
        where = (f" (lines {lines}{'…' if len(self.problems) > 20 else ''})"
                 if self.problems else "")
        if self.dry_run:
            return (f"checked {self.file}: {self.rows} rows, {self.rows - self.bad} good, "
                    f"{self.bad} bad{where}; nothing sent (dry run)")
        return (f"replayed {self.file}: {self.rows} rows, {self.accepted} accepted, "
                f"{self.duplicate} duplicate, {self.bad} bad, {self.rejected} rejected by the "
                f"gateway{where}")


# ---------------------------------------------------------------------------- reading


def _norm(header: str) -> str:
    return "".join(ch for ch in header.strip().casefold() if ch not in " _-\u3000")


_ALIASES = {_norm(alias): name for name, aliases in COLUMNS.items() for alias in aliases}


def map_columns(header: list[str], overrides: dict[str, str] | None = None) -> dict[str, int]:
    """field -> column index. `overrides` maps a field to the exact header to use for it."""
    overrides = overrides or {}
    unknown = sorted(set(overrides) - set(COLUMNS))
    if unknown:
        raise ReplayError(f"--column: unknown field {', '.join(unknown)} (fields: {', '.join(COLUMNS)})")
    index: dict[str, int] = {}
    for name, wanted in overrides.items():
        where = [i for i, h in enumerate(header) if h.strip() == wanted.strip()]
        if not where:
            raise ReplayError(f"--column {name}={wanted}: no such column in {header}")
        index[name] = where[0]
    for i, h in enumerate(header):
        name = _ALIASES.get(_norm(h))
        if name is None or name in overrides or i in index.values():
            continue
        if name in index:
            raise ReplayError(f"columns {header[index[name]]!r} and {h!r} both mean {name}: "
                              f"say which with --column {name}=HEADER")
        index[name] = i
    missing = [name for name in REQUIRED if name not in index]
    if missing:
        accepted = "; ".join(f"{m}: {' / '.join(COLUMNS[m])}" for m in missing)
        raise ReplayError(f"no column for {', '.join(missing)} in the header {header} "
                          f"(accepted names: {accepted}; or --column FIELD=HEADER)")
    return index


def parse_tz(text: str) -> timezone:
    """`+08:00`, `-0530`, `Z` or `UTC` -> a fixed offset."""
    t = text.strip().upper()
    if t in ("Z", "UTC"):
        return timezone.utc
    try:
        sign = {"+": 1, "-": -1}[t[0]]
        hours, _, minutes = t[1:].partition(":") if ":" in t else (t[1:3], "", t[3:])
        return timezone(sign * timedelta(hours=int(hours), minutes=int(minutes or 0)))
    except (KeyError, IndexError, ValueError):
        raise ReplayError(f"bad time zone {text!r}: write it like +08:00") from None


def parse_time(text: str, tz: timezone) -> datetime:
    """An export's time: ISO 8601 (offset kept), or a local time in one of TIME_FORMATS, read in
    `tz`. ValueError if it is neither."""
    text = text.strip()
    if len(text) <= 10:  # a date alone is not an event time (fromisoformat would read midnight)
        raise ValueError(f"no time of day: {text!r}")
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        for fmt in TIME_FORMATS:
            try:
                at = datetime.strptime(text, fmt)
                break
            except ValueError:
                continue
        else:
            raise ValueError(f"not a time: {text!r}") from None
    return at if at.tzinfo is not None else at.replace(tzinfo=tz)


def derived_event_id(kind: str, at: datetime, ticket: str, window: str) -> str:
    """The id of a row without one: the same event gives the same id in any export of it, whatever
    offset its time was written with."""
    basis = "\x1f".join([kind, at.astimezone(timezone.utc).isoformat(), ticket, window])
    return "csv-" + hashlib.sha256(basis.encode()).hexdigest()[:32]


def decode_bytes(data: bytes, encoding: str = "auto") -> tuple[str, str]:
    """The text of an export and its encoding: UTF-8 (with or without BOM), else GB18030 (what
    Excel writes on a Chinese Windows), unless `encoding` names one."""
    if encoding != "auto":
        try:
            return data.decode(encoding), encoding
        except (LookupError, UnicodeDecodeError) as exc:
            raise ReplayError(f"cannot read the file as {encoding}: {exc}") from None
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("gb18030"), "gb18030"
    except UnicodeDecodeError:
        raise ReplayError("the file is neither UTF-8 nor GB18030: give --encoding") from None


def read_export(text: str, tz: timezone | None = None, live: bool = False,
                overrides: dict[str, str] | None = None, keep_order: bool = False,
                encoding: str = "utf-8") -> Export:
    """Map, check and order the rows of an export (the text of the whole file); times without an
    offset are read in `tz` (default DEFAULT_TZ).

    One record per line, each line parsed on its own: a broken quote spoils only its own line
    (`bad_csv`), never the rows after it, which a whole-file CSV reader would swallow into one field.
    (A field with a line break, which queue exports do not have, is reported the same way.)
    """
    tz = tz or parse_tz(DEFAULT_TZ)
    lines = [line.rstrip("\r") for line in text.split("\n")]
    at, header, delimiter, index = _find_header(lines, overrides)
    rows: list[Row] = []
    bad: list[Problem] = []
    for number, line in enumerate(lines[at + 1:], start=at + 2):
        if not line.strip():
            continue
        try:
            cells = next(csv.reader([line], delimiter=delimiter, strict=True))
        except csv.Error as exc:
            bad.append(Problem(number, "bad_csv", str(exc)))
            continue
        row = _row(cells, index, len(header), number, tz, live)
        (rows if isinstance(row, Row) else bad).append(row)  # type: ignore[arg-type]
    if not keep_order:
        rows.sort(key=lambda r: r.at)  # stable: rows of the same time keep the file's order
    mapped = {name: header[i].strip() for name, i in index.items()}
    ignored = [h.strip() for i, h in enumerate(header) if i not in index.values() and h.strip()]
    skipped = sum(1 for line in lines[:at] if line.strip())
    return Export(rows, bad, mapped, ignored, encoding, skipped)


def _find_header(lines: list[str], overrides: dict[str, str] | None
                 ) -> tuple[int, list[str], str, dict[str, int]]:
    """The header: the first of the first HEADER_SEARCH non-empty lines whose columns map (exports
    often start with a title line), its delimiter and the column map. Else the mapping error of the
    line that looked most like a header."""
    best: tuple[int, ReplayError] | None = None
    tried = 0
    for at, line in enumerate(lines):
        if not line.strip():
            continue
        tried += 1
        if tried > HEADER_SEARCH:
            break
        try:
            delimiter = csv.Sniffer().sniff(line, DELIMITERS).delimiter
        except csv.Error:
            delimiter = ","
        cells: list[str] = []
        try:
            cells = next(csv.reader([line], delimiter=delimiter))
            return at, cells, delimiter, map_columns(cells, overrides)
        except (ReplayError, csv.Error) as exc:
            known = sum(1 for c in cells if _norm(c) in _ALIASES)
            if best is None or known > best[0]:
                best = (known, exc if isinstance(exc, ReplayError) else ReplayError(str(exc)))
    if best is None:
        raise ReplayError("the file has no header row")
    raise best[1]


def _row(cells: list[str], index: dict[str, int], width: int, line: int, tz: timezone,
         live: bool) -> Row | Problem:
    if len(cells) > width and any(c.strip() for c in cells[width:]):
        return Problem(line, "bad_row", f"{len(cells)} cells, the header has {width}")
    values = {name: cells[i].strip() for name, i in index.items() if i < len(cells) and cells[i].strip()}
    for name in REQUIRED:
        if name not in values:
            return Problem(line, f"missing_field:{name}")
    kind = KINDS.get(values["type"].strip().casefold().replace("-", "_"))
    if kind is None:
        return Problem(line, "bad_field:type", repr(values["type"])[:80])
    try:
        at = parse_time(values["at"], tz)
    except ValueError:
        return Problem(line, "bad_field:at", repr(values["at"])[:80])
    event: dict[str, Any] = {"v": 1, **values, "type": kind, "at": at.isoformat()}
    event.setdefault("event_id", derived_event_id(kind, at, values["ticket"], values["window"]))
    if not live:
        event["replay"] = True
    try:
        decode_queue_event(event)  # the webhook's own rules, so the gateway's 400s are rare
    except ProtocolError as err:
        return Problem(line, err.reason, str(err)[:120])
    return Row(line, event, at)


# ---------------------------------------------------------------------------- sending


def replay(export: Export, url: str, token: str, name: str, client: httpx.Client | None = None,
           sleep: Callable[[float], None] = time.sleep,
           progress: Callable[[Row, dict], None] | None = None) -> Summary:
    """Post the good rows in order; the summary. ReplayError when the replay cannot go on."""
    summary = Summary(file=name, rows=len(export.rows) + len(export.bad), bad=len(export.bad))
    summary.problems.extend(export.bad)
    own = client is None
    http = client or httpx.Client(timeout=HTTP_TIMEOUT_S)
    target = url.rstrip("/") + EVENTS_PATH
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    try:
        for row in export.rows:
            status, answer = _post(http, target, headers, row, sleep)
            if status == 200:
                if answer.get("status") == "duplicate":
                    summary.duplicate += 1
                else:
                    summary.accepted += 1
            else:
                summary.rejected += 1
                summary.problems.append(Problem(row.line, str(answer.get("error") or status),
                                                "refused by the gateway"))
            if progress is not None:
                progress(row, answer)
    finally:
        if own:
            http.close()
    summary.problems.sort(key=lambda p: p.line)
    return summary


def _post(http: httpx.Client, target: str, headers: dict[str, str], row: Row,
          sleep: Callable[[float], None]) -> tuple[int, dict]:
    body = json.dumps(row.event, ensure_ascii=False).encode()
    pause, last = RETRY_FIRST_S, ""
    for attempt in range(RETRIES):
        if attempt:
            sleep(pause)
            pause = min(pause * 2, RETRY_MAX_S)
        try:
            resp = http.post(target, content=body, headers=headers)
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}: {exc}"
            continue
        if resp.status_code in (401, 403):
            raise ReplayError(f"the gateway refused the queue token ({resp.status_code})")
        if resp.status_code >= 500:
            last = f"HTTP {resp.status_code}"
            continue
        try:
            answer = resp.json()
        except ValueError:
            answer = {}
        if resp.status_code in (200, 400) and isinstance(answer, dict):
            return resp.status_code, answer
        raise ReplayError(f"line {row.line}: unexpected answer {resp.status_code} from {target}: "
                          f"{resp.text[:200]}")
    raise ReplayError(f"line {row.line}: the gateway at {target} did not answer after {RETRIES} "
                      f"attempts ({last}); the rows before it were sent, and running the replay "
                      "again is safe")


# ---------------------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `hcp gateway replay-csv`."""
    parser.add_argument("file", type=Path, help="the queue system's CSV export")
    parser.add_argument("--config", type=Path,
                        help="the gateway's JSON settings: its HTTP address and queue token")
    parser.add_argument("--url", help="the gateway's base URL, e.g. http://127.0.0.1:8710")
    parser.add_argument("--token", help="the queue token (default: $HCP_QUEUE_TOKEN, or --config); "
                        "one that begins with - is written --token=VALUE")
    parser.add_argument("--tz", default=DEFAULT_TZ,
                        help=f"offset of times written without one (default {DEFAULT_TZ})")
    parser.add_argument("--encoding", default="auto", help="default: UTF-8, else GB18030")
    parser.add_argument("--column", action="append", default=[], metavar="FIELD=HEADER",
                        help=f"read FIELD from column HEADER (fields: {', '.join(COLUMNS)})")
    parser.add_argument("--live", action="store_true",
                        help="send as live events (open rating sessions) instead of a replay")
    parser.add_argument("--keep-order", action="store_true",
                        help="send in the file's order (default: by event time)")
    parser.add_argument("--dry-run", action="store_true", help="check the rows, send nothing")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON line")


def run_from_args(args: argparse.Namespace) -> int:
    """0: every row accepted or duplicate; 1: some rows bad or refused; 2: the replay could not run."""
    name = str(args.file)
    try:
        url, token = _target(args, os.environ.get("HCP_QUEUE_TOKEN"))
        overrides = dict(_pair(c) for c in args.column)
        try:
            data = args.file.read_bytes()
        except OSError as exc:
            raise ReplayError(f"cannot read {name}: {exc.strerror or exc}") from None
        text, encoding = decode_bytes(data, args.encoding)
        export = read_export(text, parse_tz(args.tz), args.live, overrides, args.keep_order, encoding)
        print(f"{name}: {encoding}, columns " + ", ".join(f"{k}={v}" for k, v in export.columns.items())
              + (f"; ignored {', '.join(export.ignored)}" if export.ignored else "")
              + (f"; {export.skipped} line(s) before the header skipped" if export.skipped else ""),
              file=sys.stderr)
        if args.dry_run:
            summary = Summary(file=name, rows=len(export.rows) + len(export.bad),
                              bad=len(export.bad), problems=list(export.bad), dry_run=True)
        else:
            summary = replay(export, url, token, name)
    except ReplayError as exc:
        print(f"replay-csv: {exc}", file=sys.stderr)
        return 2
    for problem in summary.problems:
        print(problem.text(name), file=sys.stderr)
    if args.json:
        print(json.dumps(summary.as_dict(), ensure_ascii=False))
    else:
        print(summary.text())
    return 0 if summary.ok else 1


def _target(args: argparse.Namespace, env_token: str | None) -> tuple[str, str]:
    """The gateway's URL and queue token, from the flags, the environment or its settings file."""
    url, token = args.url, args.token or env_token
    if args.config is not None and (url is None or token is None):
        from gateway.config import load_settings

        try:
            settings = load_settings(args.config)
        except (OSError, ValueError) as exc:
            raise ReplayError(f"bad settings {args.config}: {exc}") from None
        host = "127.0.0.1" if settings.http_host in ("0.0.0.0", "::", "") else settings.http_host
        url = url or f"http://{host}:{settings.http_port}"
        token = token or settings.queue_token.get_secret_value()
    if not args.dry_run and (url is None or token is None):
        raise ReplayError("say where to send: --url and --token (or $HCP_QUEUE_TOKEN), or --config")
    return url or "", token or ""


def _pair(text: str) -> tuple[str, str]:
    name, sep, header = text.partition("=")
    if not sep or not name.strip() or not header.strip():
        raise ReplayError(f"--column {text!r}: write FIELD=HEADER")
    return name.strip(), header.strip()


def read_file(path: Path, **kwargs: Any) -> Export:
    """`read_export` of a file on disk (encoding detected as `decode_bytes` does)."""
    text, encoding = decode_bytes(path.read_bytes(), kwargs.pop("encoding", "auto"))
    return read_export(text, encoding=encoding, **kwargs)
