"""The storage contract for regions, halls and the devices read across halls (hub/store/base.py:
`put_region` … `halls`, `list_devices` with its filters), run against every backend in BACKENDS.
Presence, last health and open alerts come from real ingest of the gateway's reports."""

from __future__ import annotations

import asyncio

import pytest

from hub.default_rules import PRESETS, DefaultRule
from hub.store import UnknownRegion

from .conftest import alert_item, device_key, health_item, health_payload

pytestmark = pytest.mark.anyio

SEVEN_DAYS = DefaultRule("calendar_days", 7)
FIVE_WORKDAYS = DefaultRule("working_days", 5)
T1, T2 = "2026-11-21T09:30:00.000+08:00", "2026-11-21T09:35:00.000+08:00"


async def test_a_region_is_created_then_replaced_keeping_created_at(store):
    assert await store.get_region("jilin") is None
    made = await store.put_region("jilin", name="吉林市", area_code="220200", default_rule=SEVEN_DAYS)
    assert (made.region, made.name, made.area_code, made.default_rule) == ("jilin", "吉林市", "220200", SEVEN_DAYS)
    assert made.created_at == made.updated_at
    await asyncio.sleep(0.01)  # timestamps have milliseconds
    changed = await store.put_region("jilin", name="吉林", area_code=None, default_rule=FIVE_WORKDAYS)
    assert (changed.name, changed.area_code, changed.default_rule) == ("吉林", None, FIVE_WORKDAYS)
    assert changed.created_at == made.created_at and changed.updated_at > made.updated_at
    assert await store.get_region("jilin") == changed
    assert await store.list_regions() == [changed]


async def test_regions_and_halls_list_in_byte_order_on_every_backend(store):
    for region in ("b", "B", "a"):
        await store.put_region(region, name=region, area_code=None, default_rule=SEVEN_DAYS)
    assert [r.region for r in await store.list_regions()] == ["B", "a", "b"]
    for hall in ("h2", "H9", "h10"):
        await store.put_hall(hall, region="a")
    assert [h.hall for h in await store.halls()] == ["H9", "h10", "h2"]


async def test_a_hall_needs_an_existing_region_and_can_move(store):
    with pytest.raises(UnknownRegion):
        await store.put_hall("H1", region="nowhere")
    assert await store.halls() == [] and await store.hall_region("H1") is None
    dehong = await store.put_region("dehong", name="德宏州", area_code=None, default_rule=PRESETS["dehong"].rule)
    jilin = await store.put_region("jilin", name="吉林市", area_code="220200", default_rule=SEVEN_DAYS)
    first = await store.put_hall("H1", region="dehong", name="芒市政务服务中心")
    await store.put_hall("H2", region="dehong")
    assert (first.hall, first.region, first.name) == ("H1", "dehong", "芒市政务服务中心")
    assert await store.hall_region("H1") == dehong
    await asyncio.sleep(0.01)
    moved = await store.put_hall("H1", region="jilin")  # PUT replaces: no name now
    assert (moved.region, moved.name) == ("jilin", None) and moved.updated_at > first.updated_at
    assert await store.hall_region("H1") == jilin
    assert [h.hall for h in await store.halls(region="dehong")] == ["H2"]
    assert [h.hall for h in await store.halls(region="jilin")] == ["H1"]
    assert await store.halls(region="nowhere") == []
    with pytest.raises(UnknownRegion):
        await store.put_hall("H1", region="nowhere")
    assert await store.hall_region("H1") == jilin  # a refused move changes nothing


# ---------------------------------------------------------------------------- the devices read


async def fleet(store) -> None:
    """Region R1 with halls H1 (D1 online, D2 reported offline, D3 never seen) and H2 (D4 online
    but with an open `offline` alert, D5 no health); hall H3 in no region (D6 whose offline alert
    was cleared)."""
    await store.put_region("R1", name="一区", area_code=None, default_rule=SEVEN_DAYS)
    await store.put_region("R2", name="二区", area_code=None, default_rule=SEVEN_DAYS)
    await store.put_hall("H1", region="R1")
    await store.put_hall("H2", region="R1")
    for device, hall, window in (("D1", "H1", "1"), ("D2", "H1", "2"), ("D3", "H1", "3"),
                                 ("D4", "H2", "1"), ("D5", "H2", "2"), ("D6", "H3", "1")):
        await store.register_device(device, hall, window, device_key(device))
    results = await store.ingest("H1", [
        health_item("D1", up=1000, received_at=T1, health=health_payload(3, 1000, fw="0.1.0")),
        health_item("D1", up=2000, received_at=T2, health=health_payload(3, 2000, fw="0.2.0", ob=4)),
        health_item("D2", received_at=T1, presence="offline"),
        health_item("D3", received_at=T1, presence=None),
        alert_item(1, device="D1"), alert_item(2, device="D1"),  # two open of one kind
        alert_item(3, device="D2", alert="counter_gap")])
    results += await store.ingest("H2", [health_item("D4", received_at=T2),
                                         alert_item(1, device="D4", alert="offline")])
    results += await store.ingest("H3", [health_item("D6", received_at=T1),
                                         alert_item(1, device="D6", alert="offline"),
                                         alert_item(1, "cleared", device="D6", alert="offline")])
    assert {r.status for r in results} == {"accepted"}, results


async def test_the_devices_read_judges_presence_and_shows_the_newest_health(store):
    await fleet(store)
    devices = await store.list_devices()
    assert [(d.hall, d.device, d.region, d.presence) for d in devices] == [
        ("H1", "D1", "R1", "online"), ("H1", "D2", "R1", "offline"), ("H1", "D3", "R1", "unknown"),
        ("H2", "D4", "R1", "offline"), ("H2", "D5", "R1", "unknown"), ("H3", "D6", None, "online")]
    d1, d2, _, d4, d5, d6 = devices
    assert (d1.health.up, d1.health.received_at, d1.health.health["fw"], d1.health.health["ob"]) == (
        2000, T2, "0.2.0", 4)
    assert (d1.alerts_open, d1.alerts_open_count) == (("stuck_button",), 2)
    assert (d2.alerts_open, d2.alerts_open_count) == (("counter_gap",), 1)
    assert (d4.alerts_open, d4.health.presence) == (("offline",), "online")  # the open alert wins
    assert (d5.health, d5.alerts_open, d5.alerts_open_count) == (None, (), 0)
    assert (d6.alerts_open, d6.alerts_open_count) == ((), 0)  # its offline alert was cleared
    # the clear arrives: the newest health decides again
    await store.ingest("H2", [alert_item(1, "cleared", device="D4", alert="offline")])
    assert [d.presence for d in await store.list_devices(hall="H2")] == ["online", "unknown"]


async def test_the_devices_read_filters_and_pages_in_hall_then_device_order(store):
    await fleet(store)

    async def ids(**filters) -> list[str]:
        return [d.device for d in await store.list_devices(**filters)]

    assert await ids(hall="H1") == ["D1", "D2", "D3"]
    assert await ids(region="R1") == ["D1", "D2", "D3", "D4", "D5"]
    assert await ids(region="R1", hall="H3") == []
    assert await ids(region="R2") == [] and await ids(region="nowhere") == []
    assert await ids(hall="H9") == []
    assert await ids(presence="offline") == ["D2", "D4"]
    assert await ids(presence="unknown", region="R1") == ["D3", "D5"]
    assert await ids(presence="online") == ["D1", "D6"]
    assert await ids(limit=2) == ["D1", "D2"]
    assert await ids(after=("H1", "D3"), limit=2) == ["D4", "D5"]
    assert await ids(after=("H1", "D1"), hall="H1") == ["D2", "D3"]
    assert await ids(after=("H3", "D6")) == []
    pages, after = [], None
    while page := await store.list_devices(after=after, limit=4):
        pages.append([d.device for d in page])
        after = (page[-1].hall, page[-1].device)
    assert pages == [["D1", "D2", "D3", "D4"], ["D5", "D6"]]
    # moving a hall moves its devices to the other region's read
    await store.put_hall("H2", region="R2")
    assert await ids(region="R2") == ["D4", "D5"]
