"""Browser test of the operator dashboard (issue 7): an operator signs in and sees a device go
offline after the simulator kills it.

Everything is real: Mosquitto, the hub process, the hall's gateway process, two counter devices
running the real firmware under MicroPython, Chromium. Killing a device's process is a power cut:
the broker publishes its last will, the gateway marks it offline and, after `alert_offline_after_s`,
raises its `offline` alert, which the gateway forwards to the hub; the dashboard shows the hub's
view. Screenshots: test-artifacts/browser/."""

from __future__ import annotations

import re
import time

from playwright.sync_api import expect

from tests.fixtures.accounts import PASSWORD, create_user
from tests.fixtures.device import device_key

HALL = "H1"
WAIT_S = 60.0  # a device's first health comes after its 5 s period; the gateway forwards it (loaded machine: slack)


def _presence(hub) -> dict[str, str]:
    return {d["device"]: d["presence"] for d in hub._admin("GET", "/api/v1/devices").json()}


def _wait(what: str, check, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_an_operator_sees_a_device_go_offline_after_it_is_killed(hub_process, broker, gateway_factory,
                                                                 device_factory, page, shot):
    hub = hub_process
    hub._admin("PUT", "/api/v1/regions/jilin", json={"name": "吉林市", "preset": "jilin"})
    hub._admin("PUT", f"/api/v1/halls/{HALL}", json={"region": "jilin", "name": "吉林市政务服务中心"})
    token = hub.register_gateway(HALL, device_key("gateway:" + HALL))
    for dev, window in (("D01", "1"), ("D02", "2")):
        hub.register_device(dev, HALL, window, device_key(dev))
    gateway_factory(broker, hub_url=hub.url, hall=HALL, hub_token=token,
                    devices=[{"device": "D01", "window": "1"}, {"device": "D02", "window": "2"}],
                    registry_sweep_s=0.2, alert_offline_after_s=1.0, hub_health_interval_s=0.5)
    d1 = device_factory("D01", hall=HALL, window="1", broker=broker)
    device_factory("D02", hall=HALL, window="2", broker=broker)
    _wait("both devices online at the hub", lambda: _presence(hub) == {"D01": "online", "D02": "online"})

    create_user(hub, "op-jilin", "operator", region="jilin", name="值班员 Operator")
    page.goto(f"/dashboard/halls/{HALL}")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.get_by_label("登录名 Login name").fill("op-jilin")
    page.get_by_label("密码 Password").fill(PASSWORD)
    page.get_by_role("button", name="登录 Sign in").click()
    expect(page).to_have_url(re.compile(rf"/dashboard/halls/{HALL}$"))
    expect(page.get_by_test_id("presence-D01")).to_have_text("online")
    expect(page.get_by_test_id("presence-D02")).to_have_text("online")
    shot("both-online")

    d1.kill()  # the simulator's power cut
    _wait("the hub to see D01 offline", lambda: _presence(hub).get("D01") == "offline")
    page.reload()
    expect(page.get_by_test_id("presence-D01")).to_have_text("offline")
    expect(page.get_by_test_id("presence-D02")).to_have_text("online")
    expect(page.locator('tr[data-device="D01"]')).to_contain_text("offline 离线")
    shot("d01-offline")

    page.goto("/dashboard")
    attention = page.get_by_test_id("attention")
    expect(attention.locator('tr[data-device="D01"]')).to_contain_text("offline")
    expect(attention.locator('tr[data-device="D02"]')).to_have_count(0)
    shot("overview")
