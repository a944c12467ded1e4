"""The phone rating page over HTTP on both backends (hub_db): the supplementary rating before the
service has reached the hub, one overall rating per service whichever channel comes first, one
follow-up, the deadline, refused tokens, repeats, limits, the ledger, statistics and exports."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.hub import running_app
from tests.fixtures.phone import H1, HALL_NAME, PhoneHub, china_now, hidden, text, write_key_file

LEVELS = ["非常满意", "满意", "基本满意", "不满意", "非常不满意"]


@pytest.fixture
def phone(tmp_path: Path, hub_db: dict[str, Any]) -> Iterator[PhoneHub]:
    keys = write_key_file(tmp_path / "phone-keys")
    with running_app(tmp_path / "hub-app", phone_key_file=keys, **hub_db) as hub:
        p = PhoneHub(hub).setup()
        try:
            yield p
        finally:
            p.close()


def test_the_page_offers_the_supplementary_rating_before_the_service_reaches_the_hub(phone):
    token = phone.token("svc-early", window="7")
    page = phone.show(token)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    words = text(page.text)
    assert "补充评价" in words and "7号窗口" in words and HALL_NAME in words
    assert [w for w in LEVELS if f"> {w}" in page.text or f">{w}<" in page.text] == LEVELS
    positions = [page.text.index(f'value="{score}" required') for score in (5, 4, 3, 2, 1)]
    assert positions == sorted(positions)  # 非常满意 first
    assert hidden(page.text)["kind"] == "supplementary"
    assert page.headers["cache-control"] == "no-store" and page.headers["referrer-policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]

    sent = phone.rate(token, score="2", business="1", tag=["long_wait", "many_visits"], comment="等了一个小时")
    assert sent.status_code == 303, sent.text
    assert sent.headers["location"].endswith("?lang=zh-Hans&sent=supplementary")
    thanks = phone.http.get(sent.headers["location"])
    assert "您的评价已记录：不满意。" in text(thanks.text)
    (rating,) = phone.phone_ratings()
    assert (rating["kind"], rating["score"], rating["counted"], rating["overall"], rating["window"]) == (
        "supplementary", 2, True, 2, "7")
    assert (rating["tags"], rating["comment"], rating["business_score"], rating["service_score"]) == (
        ["many_visits", "long_wait"], "等了一个小时", 1, None)
    assert rating["staff_id"] is None  # the service had not arrived
    total = phone.today_stats()
    assert (total["ratings"], total["bad"], total["scores"]["2"], total["rated_services"]) == (1, 1, 1, 0)

    phone.service("svc-early", staff_id="S0107")  # the service arrives: it is rated now, once
    total = phone.today_stats()
    assert (total["ratings"], total["services"], total["rated_services"], total["evaluation_rate"]) == (1, 1, 1, 1.0)
    verified = phone.verify_ledger()
    assert verified["ok"] and verified["entries"] == 2, verified
    assert "追加评价" in text(phone.show(token).text)  # now one follow-up
    (row,) = phone.export()
    assert (row["评价渠道"], row["评价次数"], row["满意度"], row["满意度代码"], row["文字评价"], row["办件编号"],
            row["评价编号"], row["关联评价编号"], row["评价人"]) == (
        "二维码", 1, "不满意", "4", "等了一个小时", "2026112100015", "phone:H1:svc-early:supplementary", None, None)
    (prov,) = phone.export("provincial")
    assert (prov["pf"], prov["satisfaction"], prov["assessNumber"], prov["hcpStaffId"]) == ("3", "2", "1", "S0107")


@pytest.mark.parametrize("order", ["phone_then_counter", "counter_then_phone"])
def test_one_overall_rating_per_service_whichever_channel_comes_first(phone, order):
    """The counter's rating is the service's overall rating in both orders; the phone record
    follows it (评价次数 2), the page is done, statistics count one rating, rebuilt or not."""
    token = phone.token("svc-both")
    phone.service("svc-both")
    if order == "phone_then_counter":
        assert phone.rate(token, score="1", tag="unfriendly", comment="态度差").status_code == 303
        assert phone.today_stats()["scores"]["1"] == 1
        counter_id = phone.counter("svc-both", 4)  # the gateway was offline: it arrives late
    else:
        counter_id = phone.counter("svc-both", 4)
        page = phone.show(token)
        assert hidden(page.text)["kind"] == "followup" and 'name="score"' not in page.text
        assert "本次服务已在窗口评价器上评价" in text(page.text)
        assert phone.rate(token, tag="unfriendly", comment="态度差").status_code == 303
    total = phone.today_stats()
    assert (total["ratings"], total["scores"], total["bad"], total["rated_services"]) == (
        1, {"1": 0, "2": 0, "3": 0, "4": 1, "5": 0}, 0, 1)
    assert phone.admin("POST", "/api/v1/stats/rebuild").status_code == 200
    assert phone.today_stats() == total
    (rating,) = phone.phone_ratings()
    assert (rating["counted"], rating["overall"], rating["overall_id"]) == (False, 4, counter_id)
    assert (rating["tags"], rating["comment"]) == (["unfriendly"], "态度差")
    assert text(phone.show(token).text).count("评价已完成") >= 1
    rows = sorted(phone.export(), key=lambda r: r["评价次数"])
    assert [(r["评价渠道"], r["评价次数"], r["满意度"], r["满意度代码"], r["文字评价"], r["关联评价编号"])
            for r in rows] == [("政务大厅其他终端", 1, "满意", "2", None, None),
                               ("二维码", 2, "满意", "2", "态度差", counter_id)]
    assert rows[1]["办件编号"] == rows[0]["办件编号"] == "2026112100015"
    provincial = sorted(phone.export("provincial"), key=lambda r: r["assessNumber"])
    assert [(r["pf"], r["assessNumber"], r["satisfaction"]) for r in provincial] == [("5", "1", "4"), ("3", "2", "4")]
    assert phone.verify_ledger()["ok"]


def test_a_supplementary_form_sent_after_a_counter_rating_arrived_becomes_a_followup(phone):
    token = phone.token("svc-race")
    page = phone.show(token)  # the citizen opens the form ...
    phone.counter("svc-race", 5)  # ... the counter rating arrives meanwhile ...
    sent = phone.post(token, {**hidden(page.text), "score": "1", "tag": ["long_wait"], "comment": "排队太久"})
    assert sent.status_code == 409, sent.text  # ... so no second overall rating
    words = text(sent.text)
    assert "已经有了总体评价" in words and "追加评价" in words
    assert hidden(sent.text)["kind"] == "followup" and 'name="score"' not in sent.text
    assert 'value="long_wait" checked' in sent.text and "排队太久" in sent.text  # what was typed is kept
    assert phone.phone_ratings() == []
    assert phone.post(token, {**hidden(sent.text), "tag": "long_wait", "comment": "排队太久"}).status_code == 303
    (rating,) = phone.phone_ratings()
    assert (rating["kind"], rating["score"], rating["overall"]) == ("followup", None, 5)
    assert phone.today_stats()["ratings"] == 1


def test_one_followup_and_never_a_second_overall_rating(phone):
    token = phone.token("svc-once")
    phone.counter("svc-once", 3)
    first = phone.show(token)
    second = phone.show(token)  # two tabs
    assert phone.post(token, {**hidden(first.text), "service": "5"}).status_code == 303
    assert "评价已完成" in text(phone.show(token).text)
    again = phone.post(token, {**hidden(second.text), "service": "1"})
    assert again.status_code == 303 and "sent" not in again.headers["location"]
    crafted = phone.post(token, {**hidden(second.text), "kind": "supplementary", "score": "1"})
    assert crafted.status_code == 200 and "评价已完成" in text(crafted.text)
    (rating,) = phone.phone_ratings()
    assert (rating["kind"], rating["service_score"]) == ("followup", 5)
    assert phone.today_stats()["ratings"] == 1
    assert phone.counts()["already"] == 1 and phone.counts()["overall_exists"] == 1


def test_a_double_tap_and_a_back_button_resubmit_store_once(phone):
    token = phone.token("svc-tap")
    form = {**hidden(phone.show(token).text), "score": "5", "comment": "很好"}
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: phone.post(token, form), range(4)))
    assert {a.status_code for a in answers} == {303}
    assert {a.headers["location"] for a in answers} == {answers[0].headers["location"]}
    back = phone.post(token, {**form, "score": "1"})  # the back button, another choice, the same form
    assert back.status_code == 303 and back.headers["location"].endswith("sent=supplementary")
    (rating,) = phone.phone_ratings()
    assert rating["score"] == 5
    assert phone.today_stats()["ratings"] == 1
    assert phone.counts()["posted_supplementary"] == 1 and phone.counts()["repeat"] == 4
    assert phone.verify_ledger()["entries"] == 1


def test_after_the_deadline_the_supplementary_rating_is_closed(phone):
    token = phone.token("svc-late")
    phone.service("svc-late", finished_at="2026-11-01T10:00:00+08:00")  # Jilin: 7 days, last day 11-08
    page = phone.show(token)
    assert page.status_code == 200
    assert "补充评价已截止" in text(page.text) and "2026年11月8日" in text(page.text)
    assert "<form" not in page.text
    late = phone.token("svc-late-2")
    form = hidden(phone.show(late).text)  # opened while the service was not at the hub yet ...
    phone.service("svc-late-2", finished_at="2026-11-01T10:00:00+08:00")  # ... which then says: too late
    refused = phone.post(late, {**form, "score": "5"})
    assert refused.status_code == 200 and "补充评价已截止" in text(refused.text)
    assert phone.phone_ratings() == []
    phone.counter("svc-late", 2)  # a counter rating that arrives late still gets its follow-up
    assert hidden(phone.show(token).text)["kind"] == "followup"
    assert phone.counts()["closed"] == 2  # the page shown once, the post refused once


def test_the_deadline_counts_from_the_tokens_issue_before_the_service_arrives(phone):
    phone.region({"kind": "calendar_days", "days": 1}, region="fast")
    old = phone.token("svc-old", exp=int(time.time()) + 120)  # issued 3 days ago, still valid
    assert "补充评价已截止" in text(phone.show(old).text)
    fresh = phone.token("svc-new")
    assert "（含当天）前在这里评价" in text(phone.show(fresh).text)
    form = {**hidden(phone.show(old).text)}
    assert form == {}  # a closed page has no form


def test_a_defaulted_service_is_closed_and_a_phone_rated_one_is_never_defaulted(phone):
    phone.service("svc-defaulted", finished_at="2026-10-01T10:00:00+08:00")
    phone.service("svc-phone", finished_at=china_now())
    assert phone.rate(phone.token("svc-phone"), score="4").status_code == 303
    ran = phone.admin("POST", "/api/v1/defaults/run").json()
    assert ran["applied"] == 1
    assert [d["service"] for d in phone.admin("GET", "/api/v1/defaults").json()] == ["svc-defaulted"]
    page = text(phone.show(phone.token("svc-defaulted")).text)
    assert "补充评价已截止" in page and "基本满意" in page


@pytest.mark.parametrize(("make", "status", "words", "count"), [
    (lambda p: p.token("svc", exp=int(time.time()) - 1), 410, "已过期", "refused_expired"),
    (lambda p: p.token("svc", key=bytes(32)), 403, "可能被改动过", "refused_forged"),
    (lambda p: p.token("svc", hall="H9"), 403, "不属于本平台登记的服务大厅", "refused_unknown_hall"),
    (lambda p: p.token("svc")[:-3], 400, "链接不完整或已损坏", "refused_malformed"),
    (lambda p: "not-a-token", 400, "链接不完整或已损坏", "refused_malformed"),
    (lambda p: p.token("svc") + "=", 400, "链接不完整或已损坏", "refused_malformed"),
])
def test_refused_tokens_get_a_clear_page_and_are_counted(phone, make, status, words, count):
    token = make(phone)
    for answer in (phone.show(token), phone.post(token, {"score": "5", "kind": "supplementary", "nonce": "x"})):
        assert answer.status_code == status, answer.text
        assert "无法打开评价页面" in text(answer.text) and words in text(answer.text)
        assert '<html lang="zh-Hans" dir="ltr">' in answer.text
    assert phone.counts()[count] == 2
    assert phone.phone_ratings() == []


def test_junk_never_gets_a_server_error(phone):
    tokens = ["", "a", ".", "..", "a.b", "%00", "%ff%fe", "x" * 5000, "eyJ2IjoxfQ.", "A" * 43 + "." + "B" * 43,
              phone.token("svc") + "%0a", "../../etc/passwd", "%2e%2e", "🙂.🙂"]
    for token in tokens:
        for answer in (phone.http.get(f"/r/{token}"), phone.http.post(f"/r/{token}", content=b"\xff\x00",
                                                                      headers={"content-type": "x/y"})):
            assert answer.status_code < 500, (token, answer.status_code, answer.text)
    far = phone.token("svc-far", exp=2**40)  # signed, valid until the year 36812: no calendar reaches it
    assert phone.show(far).status_code == 200
    token = phone.token("svc-junk")
    for body, ctype in ((b"\xff" * 100, "application/x-www-form-urlencoded"), (b"score=%ff%fe&kind=x", None),
                        (b"--b\r\n\r\n", "multipart/form-data; boundary=b"), (b"a=" + b"&a=1" * 100, None),
                        (b'{"score":5}', "application/json")):
        answer = phone.http.post(f"/r/{token}", content=body,
                                 headers={"content-type": ctype or "application/x-www-form-urlencoded"})
        assert answer.status_code in (400, 422), (body, answer.status_code, answer.text)
    assert phone.phone_ratings() == []


def test_a_cross_site_post_and_a_foreign_nonce_are_refused(phone):
    token = phone.token("svc-csrf")
    form = {**hidden(phone.show(token).text), "score": "1"}
    cross = phone.post(token, form, **{"Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403
    other_form = hidden(phone.show(phone.token("svc-other")).text)
    stale = phone.post(token, {**other_form, "score": "1"})
    assert stale.status_code == 400 and "页面已失效" in text(stale.text)
    assert phone.phone_ratings() == []
    assert phone.post(token, form, **{"Sec-Fetch-Site": "same-origin"}).status_code == 303
    assert phone.counts()["cross_site"] == 1


def test_posts_are_limited_per_token(phone):
    token = phone.token("svc-limit")
    form = hidden(phone.show(token).text)  # no score: each post is a form error, nothing stored
    answers = [phone.post(token, form).status_code for _ in range(11)]
    assert answers == [422] * 10 + [429]
    other = phone.token("svc-limit-2")
    assert phone.rate(other, score="5").status_code == 303  # another service is not held up
    assert phone.counts()["rate_limited"] == 1 and phone.counts()["invalid_form"] == 10


def test_form_errors_are_shown_on_the_form_with_what_was_typed(phone):
    token = phone.token("svc-errors")
    answer = phone.rate(token, comment="没选等级", phone="12345", name="张三")
    assert answer.status_code == 422
    words = text(answer.text)
    assert "请修改以下内容" in words and "请选择总体评价" in words and "请填写11位手机号" in words
    assert 'aria-invalid="true"' in answer.text and 'href="#f-score"' in answer.text
    assert 'value="张三"' in answer.text and "没选等级" in answer.text
    assert phone.post(token, {**hidden(answer.text), "score": "3"}).status_code == 303


def test_names_and_numbers_are_sealed_at_rest_shown_masked_and_checked_by_the_ledger(phone, hub_db):
    token = phone.token("svc-private")
    assert phone.rate(token, score="1", name="张三丰", phone="139 1234 5678",
                      comment="请回电").status_code == 303
    (rating,) = phone.phone_ratings()
    assert rating["contact"] == {"name": "张**", "phone": "139****5678"}
    secrets = ["13912345678", "139 1234 5678", "张三丰"]
    if hub_db.get("db_url"):
        tables = [t for (t,) in phone.hub.query(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")]
        dump = "\n".join(str(row) for t in tables for row in phone.hub.query(f'SELECT t::text FROM "{t}" t'))
        assert "phone_contacts" in tables and "张*" not in dump
        for secret in secrets:
            assert secret not in dump
    else:
        raw = b"".join(p.read_bytes() for p in Path(hub_db["db_path"]).parent.glob("hub.sqlite3*"))
        assert len(raw) > 10_000
        for secret in secrets:
            for encoding in ("utf-8", "utf-16-le", "utf-16-be"):
                assert secret.encode(encoding) not in raw
    (sealed,) = phone.hub.query("SELECT name_sealed, phone_sealed, key_id FROM phone_contacts")
    assert sealed[0].startswith("k1:") and sealed[1].startswith("k1:") and sealed[2] == "k1"
    # the ledger covers the rating's every column, has_contact included, but not the sealed values
    verified = phone.verify_ledger()
    assert verified["ok"] and verified["entries"] == 1


def test_people_see_phone_ratings_in_their_scope_and_only_operators_and_supervisors_unmask(phone):
    from tests.fixtures.accounts import Browser, create_user
    create_user(phone.hub, "op1", "operator", region="jilin")
    create_user(phone.hub, "op2", "operator", hall="H2")
    create_user(phone.hub, "hd1", "handler", unit="市市场监督管理局")
    create_user(phone.hub, "hd2", "handler", unit="市税务局")
    create_user(phone.hub, "au1", "auditor")
    phone.service("svc-people")  # unit 市市场监督管理局
    assert phone.rate(phone.token("svc-people"), score="1", name="李四", phone="13900001111").status_code == 303
    path = "/api/v1/phone/ratings/H1/svc-people/supplementary/contact"

    def signed_in(login: str) -> Browser:
        b = Browser(phone.hub.url)
        assert b.sign_in(login, "correct horse battery").status_code == 303
        return b

    with signed_in("hd1") as hd1:
        (seen,) = hd1.get("/api/v1/phone/ratings").json()
        assert seen["contact"] == {"name": "李*", "phone": "139****1111"} and seen["unit"] == "市市场监督管理局"
        assert hd1.http.post(path, json={"reason": "回访"}, headers={"X-CSRF-Token": hd1.csrf}).status_code == 403
    with signed_in("hd2") as hd2:
        assert hd2.get("/api/v1/phone/ratings").json() == []
    with signed_in("au1") as au1:
        assert au1.get("/api/v1/phone/ratings").status_code == 403
        assert au1.get("/api/v1/phone/counts", params={"from": "2026-01-01", "to": "2030-01-01"}).status_code == 200
    with signed_in("op2") as op2:
        assert op2.get("/api/v1/phone/ratings").json() == []
        assert op2.http.post(path, json={"reason": "回访"}, headers={"X-CSRF-Token": op2.csrf}).status_code == 403
    with signed_in("op1") as op1:
        assert op1.http.post(path, json={"reason": "回访"}).status_code == 403  # no CSRF header
        answer = op1.http.post(path, json={"reason": "差评回访"}, headers={"X-CSRF-Token": op1.csrf})
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"name": "李四", "phone": "13900001111"}
        missing = op1.http.post(path.replace("svc-people", "svc-none"), json={"reason": "x"},
                                headers={"X-CSRF-Token": op1.csrf})
        assert missing.status_code == 404
    log = phone.admin("GET", "/api/v1/audit", params={"event": "personal_data_read"}).json()["entries"]
    assert [(e["login"], e["role"], e["what"], e["record"], e["detail"]) for e in log] == [
        ("op1", "operator", "rater_contact", "phone_rating:H1/svc-people/supplementary", {"reason": "差评回访"})]


def test_the_ledger_shows_a_phone_rating_edited_or_deleted(phone, hub_db):
    from .conftest import run_sql
    phone.rate(phone.token("svc-edit"), score="1", comment="差")
    phone.rate(phone.token("svc-gone"), score="2")
    run_sql(hub_db, "UPDATE phone_ratings SET score = 5 WHERE service = 'svc-edit'")
    run_sql(hub_db, "DELETE FROM phone_ratings WHERE service = 'svc-gone'")
    run_sql(hub_db, "INSERT INTO phone_ratings (hall, service, kind, window_id, score, tags, has_contact, lang, "
                    "token_exp, nonce, submitted_at) VALUES ('H1', 'svc-fake', 'supplementary', '7', 5, '[]', "
                    "FALSE, 'zh-Hans', 0, 'n', '2026-11-21T00:00:00.000+00:00')")
    verified = phone.verify_ledger()
    assert not verified["ok"]
    assert {(b["ref"], b["problem"]) for b in verified["breaks"]} == {
        ("svc-edit:supplementary", "record_altered"), ("svc-gone:supplementary", "record_missing"),
        ("svc-fake:supplementary", "unledgered")}
    assert verified["unledgered"] == {"phone": 1}


def test_a_hub_without_a_key_file_asks_for_no_name_or_number(tmp_path, hub_db):
    with running_app(tmp_path / "no-keys", **hub_db) as hub:
        phone = PhoneHub(hub).setup()
        token = phone.token("svc-nokey")
        page = phone.show(token)
        assert 'name="phone"' not in page.text and 'name="name"' not in page.text
        refused = phone.rate(token, score="5", phone="13800138000")
        assert refused.status_code == 422 and "暂时不能留下联系方式" in text(refused.text)
        assert phone.rate(token, score="5").status_code == 303
        assert phone.admin("POST", "/api/v1/phone/rekey").status_code == 409
        phone.close()


def test_a_bad_key_file_stops_the_start(tmp_path):
    from hub.app import create_app
    from hub.config import HubSettings
    from hub.phone.crypto import KeyFileError
    bad = tmp_path / "keys"
    bad.write_text("k1 not-hex\n")
    with pytest.raises(KeyFileError, match="expected"):
        create_app(HubSettings(db_path=tmp_path / "h.sqlite3", phone_key_file=bad))


def test_the_page_works_for_services_rated_on_another_day_and_window(phone):
    """The token's window files the rating until the service arrives; a service at another window
    (the gateway's record wins) shows its own."""
    token = phone.token("svc-win", window="9")
    assert "9号窗口" in text(phone.show(token).text)
    phone.service("svc-win", window="8", ticket="B007", finished_at=china_now(-timedelta(hours=1)))
    page = text(phone.show(token).text)
    assert "8号窗口" in page and "排队号 B007" in page and "办理事项：个体工商户设立登记" in page
    phone.rate(token, score="4")
    assert phone.phone_ratings()[0]["window"] == "8" and phone.phone_ratings()[0]["staff_id"] == "S0107"
    assert phone.counts().get("posted_supplementary") == 1
    assert phone.hub.query("SELECT COUNT(*) FROM phone_ratings WHERE hall = ?", H1) == [(1,)]
