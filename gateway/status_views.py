"""The status document for people: a text table (`hcp gateway status`) and an HTML page (`GET /status`).

Both show the same things in the same order: the links (MQTT, hub), the outbox, the store (does
the file take writes, its sizes), the devices, the open alerts, alerts cleared lately, dead letters
by reason, quarantined payloads. The page is plain HTML with a meta refresh
(no script at all); every value that came from a device, the queue system or the database is
escaped, since a device's firmware string or error text is whatever the device sent.
"""

from __future__ import annotations

import time
from html import escape
from typing import Any

PAGE_REFRESH_S = 10  # the page reloads itself; a hall screen can stay on it all day


# ---------------------------------------------------------------------------- formatting


def when(ts: float | None, now: float) -> str:
    """A gateway wall time as the hall reads it: `09:30:07` today, `11-19 18:02` before."""
    if ts is None:
        return "-"
    t, today = time.localtime(ts), time.localtime(now)
    if (t.tm_year, t.tm_yday) == (today.tm_year, today.tm_yday):
        return time.strftime("%H:%M:%S", t)
    return time.strftime("%Y-%m-%d %H:%M", t)


def age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = max(0, int(seconds))
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    if s < 172800:
        return f"{s // 3600} h"
    return f"{s // 86400} d"


def presence_text(d: dict) -> str:
    if d["presence"] == "online":
        return "online"
    if d["presence"] is None:
        return "never seen"
    return {"timeout": "offline (silent)", "status": "offline"}.get(d["offline_reason"], "offline")


def last_rating_text(d: dict, now: float) -> str:
    r = d["last_rating"]
    return f"#{r['n']} {when(r['at'], now)}" if r else "-"


def outbox_text(doc: dict) -> str:
    o = doc["outbox"]
    oldest = doc.get("outbox_oldest_pending_s")
    tail = f" (oldest pending {age(oldest)})" if oldest is not None else ""
    return f"pending {o.get('pending', 0)}, sent {o.get('sent', 0)}, dead {o.get('dead', 0)}{tail}"


def hub_text(doc: dict, now: float) -> str:
    hub = doc.get("hub") or {}
    state = hub.get("state", "unknown")
    parts = [f"{state} ({hub['url']})" if hub.get("url") else state]
    if hub.get("last_ok_at"):
        parts.append(f"last answer {when(hub['last_ok_at'], now)}")
    if state != "up" and hub.get("last_error"):
        parts.append(f"last error: {hub['last_error'][:120]}")
    if hub.get("next_retry_at") and state != "up":
        parts.append(f"retry {when(hub['next_retry_at'], now)}")
    return "; ".join(parts)


def size_text(n: int | None) -> str:
    if n is None:
        return "?"
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def store_ok(doc: dict) -> bool | None:
    """True when the file takes writes, False when it does not, None when not known."""
    state = (doc.get("store") or {}).get("state")
    return None if state in (None, "unknown") else state == "ok"


def store_text(doc: dict, now: float) -> str:
    """Whether the file takes writes (a full disk means no device is acked), sizes, pruning."""
    st = doc.get("store")
    if not st:
        return "unknown"
    state = st.get("state") or "unknown"
    if state == "ok":
        head = "ok"
    elif state == "unknown":
        head = "unknown (gateway not running)"
    else:  # full / busy / error: say since when, how often and why
        head = f"{state.upper()} since {when(st.get('since'), now)}, {st.get('failures', 0)} failed writes"
        if st.get("last_error"):
            head += f" ({st['last_error'][:120]})"
    parts = [head, f"db {size_text(st.get('db_bytes'))}, WAL {size_text(st.get('wal_bytes'))}, "
                   f"disk free {size_text(st.get('disk_free_bytes'))}"]
    if state == "ok" and st.get("last_error"):
        parts.append(f"last failure {when(st.get('last_error_at'), now)}: {st['last_error'][:120]}")
    ret = st.get("retention") or {}
    if ret.get("last_run_at"):
        parts.append(f"pruned {ret.get('last_pruned', 0)} at {when(ret['last_run_at'], now)}")
    if ret.get("last_error"):
        parts.append(f"pruning failed: {ret['last_error'][:120]}")
    return "; ".join(parts)


def dead_rows(doc: dict) -> list[list[str]]:
    """Dead letters by the hub's reason, most first."""
    dead = doc.get("dead_letters") or {}
    return [[r or "(none)", str(n)] for r, n in sorted(dead.items(), key=lambda kv: (-kv[1], kv[0]))]


DEAD_HINT = "hcp gateway dead-letters lists them; --resend SEQ... or --resend-all re-sends"


def mqtt_text(doc: dict) -> str:
    m = doc.get("mqtt") or {}
    if m.get("connected") is None:
        return "unknown"
    state = "connected" if m["connected"] else "DISCONNECTED"
    return f"{state} to {m.get('broker')} ({m.get('connects')} connects)"


def summary_text(doc: dict) -> str:
    s = doc["summary"]
    extra = [f"{s['never_seen']} never seen"] if s["never_seen"] else []
    extra += [f"{s['unregistered']} unregistered"] if s["unregistered"] else []
    extra += [f"{s['retired']} retired"] if s.get("retired") else []
    return (f"{s['online']} online, {s['offline']} offline of {s['devices']} registered"
            + "".join(f", {e}" for e in extra))


def device_rows(doc: dict) -> list[list[str]]:
    now = doc["time"]
    rows = []
    for d in sorted(doc["devices"], key=lambda d: (d["window"] is None, _window_key(d["window"]),
                                                   d["device"])):
        health = d["health"] or {}
        clock = d["clock"] or {}
        rows.append([
            d["window"] or "(none)", d["device"], presence_text(d), when(d["last_seen"], now),
            last_rating_text(d, now), str(health.get("ob", "-")),
            when(clock["offset_ms"] / 1000, now) if clock else "-", d["kid"] or "-", d["fw"] or "-",
            ", ".join(d["alerts"]) or "-", _short(health.get("err")),
        ])
    return rows


# BOOTED is the clock offset read as people read it: wall time at the device's monotonic zero
DEVICE_HEADER = ["WINDOW", "DEVICE", "PRESENCE", "LAST SEEN", "LAST RATING", "OB", "BOOTED",
                 "KID", "FW", "ALERTS", "LAST ERROR"]
ALERT_HEADER = ["RAISED", "DEVICE", "ALERT", "DETAIL"]
CLEARED_HEADER = ["RAISED", "CLEARED", "DEVICE", "ALERT", "BY", "DETAIL"]


def alert_rows(doc: dict) -> list[list[str]]:
    now = doc["time"]
    return [[when(a["raised_at"], now), a["device"], a["kind"], a["detail"]]
            for a in doc["alerts"]["open"]]


def cleared_rows(doc: dict) -> list[list[str]]:
    now = doc["time"]
    return [[when(a["raised_at"], now), when(a["cleared_at"], now), a["device"], a["kind"],
             a["cleared_by"] or "-", a["detail"]] for a in doc["alerts"]["recent"]]


def _short(text: object, limit: int = 40) -> str:
    if not text:
        return "-"
    one = " ".join(str(text).split())
    return one if len(one) <= limit else one[:limit - 1] + "…"


def _window_key(window: str | None) -> tuple:
    """Windows in counter order: 2 before 10, A2 before A10."""
    if window is None:
        return ()
    head = window.rstrip("0123456789")
    digits = window[len(head):]
    return (head, int(digits) if digits else -1, window)


# ---------------------------------------------------------------------------- text


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    cells = [header] + [[_one_line(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return ["  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in cells]


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def render_text(doc: dict[str, Any], source: str) -> str:
    """The CLI's table; `source` says where the figures came from (a URL, or the file)."""
    now = doc["time"]
    lines = [f"hall {doc.get('hall') or '?'}  at {when(now, now)}  ({source})",
             f"  MQTT     {mqtt_text(doc)}",
             f"  hub      {hub_text(doc, now)}",
             f"  outbox   {outbox_text(doc)}",
             f"  store    {store_text(doc, now)}",
             f"  devices  {summary_text(doc)}",
             ""]
    lines += _table(DEVICE_HEADER, device_rows(doc)) if doc["devices"] else ["(no devices)"]
    lines.append("")
    open_rows = alert_rows(doc)
    lines.append(f"ALERTS: {len(open_rows)} open")
    if open_rows:
        lines += _table(ALERT_HEADER, open_rows)
    dead = dead_rows(doc)
    if dead:
        lines.append("")
        lines.append(f"DEAD LETTERS: {sum(int(n) for _, n in dead)} ("
                     + ", ".join(f"{r} {n}" for r, n in dead) + f"); {DEAD_HINT}")
    if doc["quarantine"]:
        lines.append("")
        lines.append("QUARANTINE: " + ", ".join(f"{r} {n}" for r, n in sorted(doc["quarantine"].items())))
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- HTML

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em;margin:0 0 .2em} h2{font-size:1.1em;margin:1.4em 0 .4em}
table{border-collapse:collapse} th,td{padding:.25em .7em;border-bottom:1px solid #ddd;text-align:left}
th{background:#f3f3f3} .bad{color:#b00020;font-weight:600} .ok{color:#1b7f2a} .muted{color:#777}
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em;margin:0} dt{font-weight:600}
"""


def _cells(row: list[str], tag: str = "td", classes: list[str] | None = None) -> str:
    out = []
    for i, c in enumerate(row):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        out.append(f"<{tag}{cls}>{escape(_one_line(c))}</{tag}>")
    return "<tr>" + "".join(out) + "</tr>"


def _html_table(header: list[str], rows: list[list[str]], classes: list[list[str]] | None = None,
                empty: str = "none") -> str:
    if not rows:
        return f'<p class="muted">{escape(empty)}</p>'
    body = "".join(_cells(r, classes=classes[i] if classes else None) for i, r in enumerate(rows))
    return f"<table><thead>{_cells(header, 'th')}</thead><tbody>{body}</tbody></table>"


def render_html(doc: dict[str, Any]) -> str:
    now = doc["time"]
    hall = doc.get("hall") or "?"
    hub_state = (doc.get("hub") or {}).get("state", "unknown")
    mqtt_up = (doc.get("mqtt") or {}).get("connected")
    rows = device_rows(doc)
    classes = [["", "", "ok" if r[2] == "online" else "bad", "", "", "", "", "", "",
                "bad" if r[9] != "-" else "", ""] for r in rows]
    s = doc["summary"]
    facts = [
        ("MQTT 消息代理", mqtt_text(doc), "ok" if mqtt_up else "bad"),
        ("Hub 中心", hub_text(doc, now), "ok" if hub_state == "up" else "bad"),
        ("Outbox 待发", outbox_text(doc), "bad" if doc["outbox"].get("dead") else ""),
        ("Store 存储", store_text(doc, now), {True: "ok", False: "bad"}.get(store_ok(doc), "")),
        ("Devices 设备", summary_text(doc), "bad" if s["offline"] or s["never_seen"] else "ok"),
        ("Alerts 告警", f"{s['alerts_open']} open", "bad" if s["alerts_open"] else "ok"),
    ]
    dl = "".join(f"<dt>{escape(k)}</dt><dd class=\"{c}\">{escape(v)}</dd>" for k, v, c in facts)
    quarantine = [[r, str(n)] for r, n in sorted(doc["quarantine"].items())]
    return (
        "<!doctype html>\n<html lang=\"zh-CN\"><head><meta charset=\"utf-8\">"
        f"<meta http-equiv=\"refresh\" content=\"{PAGE_REFRESH_S}\">"
        "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
        f"<title>{escape(hall)} 大厅状态 hall status</title><style>{_STYLE}</style></head><body>"
        f"<h1>{escape(hall)} 大厅状态 · hall status</h1>"
        f"<p class=\"muted\">{escape(when(now, now))} · refreshes every {PAGE_REFRESH_S} s · "
        "<a href=\"/api/v1/status\">JSON</a> · <a href=\"/metrics\">metrics</a></p>"
        f"<dl>{dl}</dl>"
        f"<h2>Alerts 告警 ({len(doc['alerts']['open'])} open)</h2>"
        + _html_table(ALERT_HEADER, alert_rows(doc), empty="no open alerts")
        + "<h2>Devices 设备</h2>"
        + _html_table(DEVICE_HEADER, rows, classes, empty="no devices registered or heard")
        + "<h2>Cleared lately 已解除</h2>"
        + _html_table(CLEARED_HEADER, cleared_rows(doc), empty="none")
        + f"<h2>Dead letters 死信 ({sum(int(n) for _, n in dead_rows(doc))})</h2>"
        + _html_table(["REASON", "ITEMS"], dead_rows(doc), empty="none")
        + (f'<p class="muted">{escape(DEAD_HINT)}</p>' if dead_rows(doc) else "")
        + "<h2>Quarantine 隔离的消息</h2>"
        + _html_table(["REASON", "PAYLOADS"], quarantine, empty="none")
        + "</body></html>\n"
    )
