"""The CSV replay adapter (gateway/queue_csv.py, `hcp gateway replay-csv`): a queue system's export,
English or Chinese headers, into a real gateway's webhook; bad rows reported by line and counted,
the rest sent in time order as replayed events (no prompts), idempotent on a second run and against
what the webhook already delivered live."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest

from gateway import queue_csv as Q
from hcp.cli import main
from simulator.broker import free_port

CST = timezone(timedelta(hours=8))
HEADER = "票号,窗口,工号,姓名,事项编码,事项名称,办件编号,办理单位,事件,时间"
WHO = "S0107,张三,000105001000,个体工商户设立登记,2026112100015,市市场监督管理局"
EXPORT = f"""{HEADER}
A001,7,{WHO},办结,2026-11-21 09:30:00
A001,7,{WHO},叫号,2026-11-21 09:20:00
A001,7,{WHO},开始办理,2026-11-21 09:21:00
A001,7,{WHO},受理,2026-11-21 09:21:40
A002,8,S0108,李四,000105002000,,,,过号,2026-11-21 09:31:00

A003,7/8,{WHO},办结,2026-11-21 09:32:00
A004,7,,,000105001000,,,,办结,2026-11-21 09:33:00
A005,7,{WHO},午休,2026-11-21 09:34:00
A006,7,{WHO},办结,yesterday
A007,9,S0109,王五,000105003000,,2026112100016,,办结,2026/11/21 9:45
"""
BAD_LINES = {8: "bad_field:window", 9: "missing_field:staff_id", 10: "bad_field:type",
             11: "bad_field:at"}


@pytest.fixture
def gw(broker, gateway_factory):
    return gateway_factory(broker, devices=[{"device": "D07", "window": "7"}])


def replay_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hcp.cli", "gateway", "replay-csv", *args],
                          capture_output=True, text=True, timeout=60)


def services(gw):
    return {(r["ticket"], r["window"]): dict(r) for r in gw.query("SELECT * FROM services")}


def test_a_chinese_export_is_replayed_in_time_order_bad_rows_reported_and_a_rerun_changes_nothing(
        gw, broker, device_peers, tmp_path):
    dev = device_peers(broker, "D07")
    export = tmp_path / "export.csv"
    export.write_text(EXPORT, encoding="utf-8-sig")  # Excel's UTF-8 starts with a BOM
    run = replay_cli(str(export), "--url", gw.url, "--token", gw.queue_token)
    assert run.returncode == 1, run.stderr
    for line, reason in BAD_LINES.items():
        assert f"{export}:{line}: {reason}" in run.stderr, run.stderr
    assert run.stdout.strip() == (f"replayed {export}: 10 rows, 6 accepted, 0 duplicate, 4 bad, "
                                  "0 rejected by the gateway (lines 8, 9, 10, 11)")

    svc = services(gw)
    assert set(svc) == {("A001", "7"), ("A002", "8"), ("A007", "9")}
    a1 = svc[("A001", "7")]  # its rows came finished-first: sent by time, it is one service
    assert (a1["state"], a1["outcome"], a1["staff_id"], a1["case_no"], a1["unit"]) == (
        "ended", "finished", "S0107", "2026112100015", "市市场监督管理局")
    assert (a1["called_at"], a1["started_at"], a1["accepted_at"], a1["finished_at"]) == (
        "2026-11-21T09:20:00+08:00", "2026-11-21T09:21:00+08:00", "2026-11-21T09:21:40+08:00",
        "2026-11-21T09:30:00+08:00")
    assert svc[("A002", "8")]["outcome"] == "no_show"
    assert svc[("A007", "9")]["finished_at"] == "2026-11-21T09:45:00+08:00"
    # a replay is the past: no session, no prompt, nothing a local rating could bind to
    assert a1["session_opened_at"] is None and a1["ended_rx"] is None and a1["serving_rx"] is None
    events = gw.query("SELECT event_id, body FROM queue_events")
    assert len(events) == 6 and all(e["event_id"].startswith("csv-") for e in events)
    assert all(json.loads(e["body"])["replay"] is True for e in events)
    outbox = [json.loads(r["item"]) for r in gw.query("SELECT item FROM outbox WHERE kind = 'service'")]
    assert sorted((i["ticket"], i["outcome"]) for i in outbox) == [
        ("A001", "finished"), ("A002", "no_show"), ("A007", "finished")]
    assert gw.status()["counters"]["events.replayed"] == 6
    time.sleep(0.3)
    assert dev.prompts == []

    def rows():  # what a rerun must not change (the forwarder keeps trying: attempts do change)
        return [[tuple(r) for r in gw.query(sql)] for sql in (
            "SELECT * FROM services ORDER BY id", "SELECT * FROM queue_events ORDER BY event_id",
            "SELECT seq, kind, key, item FROM outbox ORDER BY seq")]

    before = rows()
    again = replay_cli(str(export), "--url", gw.url, "--token", gw.queue_token, "--json")
    assert again.returncode == 1
    summary = json.loads(again.stdout)
    assert (summary["rows"], summary["accepted"], summary["duplicate"], summary["bad"]) == (10, 0, 6, 4)
    assert [(p["line"], p["reason"]) for p in summary["problems"]] == sorted(BAD_LINES.items())
    assert rows() == before


def test_a_replay_overlapping_what_the_webhook_delivered_live_records_no_service_twice(
        gw, broker, device_peers, tmp_path):
    dev = device_peers(broker, "D07")
    at = datetime(2026, 11, 21, 10, 0, tzinfo=CST)
    gw.post_event(event_id="q-1", type="started", ticket="B1", at=(at - timedelta(minutes=5)).isoformat(),
                  staff_id=..., matter_code=...)
    live = gw.post_event(event_id="q-2", type="finished", ticket="B1", at=at.isoformat())
    assert dev.wait_prompt()["sess"] == live["session"]
    # the export writes local times without an offset, and its clock stamped `finished` 20 s later
    export = tmp_path / "overlap.csv"
    export.write_text("ticket,window,staff_id,matter_code,event,time\n"
                      "B1,7,S0107,000105001000,started,2026-11-21 09:55:00\n"
                      "B1,7,S0107,000105001000,finished,2026-11-21 10:00:20\n"
                      "B2,7,S0107,000105001000,finished,2026-11-21 10:10:00\n")
    assert main(["gateway", "replay-csv", str(export), "--url", gw.url,
                 "--token", gw.queue_token]) == 0
    svc = services(gw)
    assert set(svc) == {("B1", "7"), ("B2", "7")}
    assert svc[("B1", "7")]["id"] == live["service"]
    assert len(gw.query("SELECT * FROM outbox WHERE kind = 'service'")) == 2
    counters = gw.status()["counters"]
    assert counters["events.replay_matched"] == 2 and counters["events.replayed"] == 1
    time.sleep(0.3)
    assert len(dev.prompts) == 1  # only the live `finished` prompted


def test_an_export_with_ids_in_gb18030_with_semicolons_sent_live_prompts_the_device(
        gw, broker, device_peers, tmp_path, capsys):
    dev = device_peers(broker, "D07")
    export = tmp_path / "gbk.csv"
    export.write_bytes(("event_id;type;time;ticket_no;window;staff;matter_code;unit\n"
                        "ev-9;finished;2026-11-21T10:30:00+08:00;C1;7;S0107;000105001000;市政务服务中心\n")
                       .encode("gb18030"))
    assert main(["gateway", "replay-csv", str(export), "--config", str(gw.config_path),
                 "--live"]) == 0
    assert "gb18030" in capsys.readouterr().err
    [event] = gw.query("SELECT event_id, session, body FROM queue_events")
    assert event["event_id"] == "ev-9" and "replay" not in json.loads(event["body"])
    assert dev.wait_prompt()["sess"] == event["session"]
    assert services(gw)[("C1", "7")]["unit"] == "市政务服务中心"


def test_a_wrong_token_or_an_unreadable_header_stops_with_a_clear_error(gw, tmp_path, capsys):
    export = tmp_path / "e.csv"
    export.write_text(EXPORT, encoding="utf-8")
    assert main(["gateway", "replay-csv", str(export), "--url", gw.url, "--token", "nope"]) == 2
    assert "refused the queue token (401)" in capsys.readouterr().err
    assert gw.query("SELECT * FROM queue_events") == []

    export.write_text("号码牌,柜台\nA1,7\n", encoding="utf-8")
    assert main(["gateway", "replay-csv", str(export), "--url", gw.url, "--token", gw.queue_token]) == 2
    err = capsys.readouterr().err
    assert "no column for type, at, ticket, window" in err and "窗口" in err and "--column" in err
    # told which column is which, it reads the file
    export.write_text("号码牌,柜台,动作,时间\nA1,7,called,2026-11-21 09:00\n", encoding="utf-8")
    assert main(["gateway", "replay-csv", str(export), "--url", gw.url, "--token", gw.queue_token,
                 "--column", "ticket=号码牌", "--column", "window=柜台"]) == 0
    assert [r["ticket"] for r in gw.query("SELECT ticket FROM services")] == ["A1"]


def test_a_queue_token_that_begins_with_a_dash_is_passed_as_token_equals(broker, gateway_factory,
                                                                        tmp_path):
    """`--token -x…` reads as another option; `--token=-x…` is the way, and the help says so."""
    gw = gateway_factory(broker, queue_token="-Xq3-starts-with-a-dash",
                         devices=[{"device": "D07", "window": "7"}])
    export = tmp_path / "e.csv"
    export.write_text("ticket,window,type,at\nA1,7,called,2026-11-21 09:00\n", encoding="utf-8")
    spaced = replay_cli(str(export), "--url", gw.url, "--token", gw.queue_token)
    assert spaced.returncode == 2 and "--token: expected one argument" in spaced.stderr
    assert gw.query("SELECT * FROM queue_events") == []
    joined = replay_cli(str(export), "--url", gw.url, f"--token={gw.queue_token}")
    assert joined.returncode == 0, joined.stderr
    assert [r["ticket"] for r in gw.query("SELECT ticket FROM services")] == ["A1"]
    assert "--token=VALUE" in " ".join(replay_cli("--help").stdout.split())


def test_a_row_the_gateway_refuses_is_reported_with_its_line_and_the_rest_go_on(gw):
    """A gateway of another version may refuse what this adapter's checks let through."""
    export = Q.read_export("ticket,window,type,at\nA1,7,called,2026-11-21 09:00\n"
                           "A2,7,called,2026-11-21 09:05\n")
    first = export.rows[0]
    export.rows[0] = Q.Row(first.line, {**first.event, "window": "7/8"}, first.at)
    summary = Q.replay(export, gw.url, gw.queue_token, "e.csv")
    assert (summary.accepted, summary.rejected, summary.ok) == (1, 1, False)
    assert summary.problems == [Q.Problem(2, "bad_field:window", "refused by the gateway")]
    assert [r["ticket"] for r in gw.query("SELECT ticket FROM services")] == ["A2"]


def test_a_gateway_that_stays_away_stops_the_replay_after_its_retries(tmp_path):
    export = Q.read_export("ticket,window,type,at\nA1,7,called,2026-11-21 09:00\n"
                           "A1,7,started,2026-11-21 09:01\n")
    pauses: list[float] = []
    with pytest.raises(Q.ReplayError, match="line 2: the gateway .* did not answer after 6"):
        Q.replay(export, f"http://127.0.0.1:{free_port()}", "t", "e.csv", sleep=pauses.append)
    assert pauses == [0.5, 1.0, 2.0, 4.0, 8.0]


# ---------------------------------------------------------------------------- reading, no gateway


def test_times_are_read_with_or_without_an_offset():
    tz = Q.parse_tz("+08:00")
    want = datetime(2026, 11, 21, 9, 30, tzinfo=CST)
    for text in ("2026-11-21 09:30:00", "2026-11-21T09:30", "2026/11/21 9:30", "2026/11/21 09:30:00",
                 "20261121093000", "2026-11-21T01:30:00Z", "2026-11-21T10:30:00+09:00"):
        assert Q.parse_time(text, tz) == want, text
    with pytest.raises(ValueError):
        Q.parse_time("21.11.2026", tz)
    assert Q.parse_tz("-0530").utcoffset(None) == -timedelta(hours=5, minutes=30)
    with pytest.raises(Q.ReplayError):
        Q.parse_tz("CST")


def test_a_derived_event_id_depends_on_the_event_not_on_how_the_export_wrote_it():
    tz = Q.parse_tz("+08:00")
    a = Q.read_export("票号,窗口,事件,时间\nA1,7,叫号,2026-11-21 09:30:00\n", tz)
    b = Q.read_export("time,window,ticket,type\n2026-11-21T01:30:00Z,7,A1,called\n", tz)
    assert a.rows[0].event["event_id"] == b.rows[0].event["event_id"]
    c = Q.read_export("time,window,ticket,type\n2026-11-21T01:30:00Z,8,A1,called\n", tz)
    assert c.rows[0].event["event_id"] != a.rows[0].event["event_id"]


def test_a_title_line_is_skipped_and_a_broken_quote_or_a_nul_spoils_only_its_own_line():
    export = Q.read_export("某某市政务服务中心 排队记录 2026-11-21\n"
                           "ticket\twindow\ttype\tat\n"
                           "A1\t7\tcalled\t2026-11-21 09:00\n"
                           'A2\t7\t"called\t2026-11-21 09:01\n'
                           "A3\t7\tcal\x00led\t2026-11-21 09:02\n"
                           "A4\t7\tcalled\t2026-11-21\n"
                           "A5\t7\tcalled\t2026-11-21 09:04\r\n")
    assert export.skipped == 1
    assert [r.event["ticket"] for r in export.rows] == ["A1", "A5"]
    assert [(p.line, p.reason) for p in export.bad] == [(4, "bad_csv"), (5, "bad_field:type"),
                                                        (6, "bad_field:at")]


def test_headers_kinds_and_row_shapes():
    export = Q.read_export("Ticket , WINDOW,Event-Type,Event Time,备注\n"
                           "A1,7,No-Show,2026-11-21 09:00,迟到\n"
                           "A2,7,called,2026-11-21 08:00,,extra\n"
                           "A3,7,called,2026-11-21 08:30,,\n")
    assert export.columns == {"ticket": "Ticket", "window": "WINDOW", "type": "Event-Type",
                              "at": "Event Time"}
    assert export.ignored == ["备注"]
    assert [(r.line, r.event["type"]) for r in export.rows] == [(4, "called"), (2, "no_show")]
    assert [(p.line, p.reason) for p in export.bad] == [(3, "bad_row")]
    with pytest.raises(Q.ReplayError, match="both mean ticket"):
        Q.read_export("票号,排队号,窗口,事件,时间\n")
    with pytest.raises(Q.ReplayError, match="no header"):
        Q.read_export("\n\n")
    with pytest.raises(Q.ReplayError, match="unknown field colour"):
        Q.map_columns(["a"], {"colour": "a"})
