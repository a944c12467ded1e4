"""The real gateway's QR code opens the hub's phone page: the gateway signs the token when it
prompts the window's device, the hub verifies it with the key registered for the hall, and the
page works although the service is still in the gateway's outbox (its hub is unreachable)."""

from __future__ import annotations

from pathlib import Path

from tests.fixtures.device import device_key
from tests.fixtures.hub import running_app
from tests.fixtures.phone import PhoneHub, hidden, text, write_key_file


def test_the_gateways_qr_code_opens_the_page_before_the_service_reaches_the_hub(tmp_path: Path, broker,
                                                                                 gateway_factory, device_peers):
    with running_app(tmp_path / "hub", phone_key_file=write_key_file(tmp_path / "keys")) as hub:
        phone = PhoneHub(hub)
        hub.register_gateway("H1", device_key("gateway:H1"))  # the key the test gateway signs with
        gw = gateway_factory(broker, devices=[{"device": "D07", "window": "7"}], phone_url=hub.url + "/")
        dev = device_peers(broker, "D07")
        answer = gw.post_event(type="finished", ticket="A031", window="7")
        qr = dev.wait_prompt()["qr"]
        assert qr.startswith(hub.url + "/r/")
        token = qr.rsplit("/r/", 1)[1]
        page = phone.show(token)
        assert page.status_code == 200, page.text
        assert hidden(page.text)["kind"] == "supplementary" and "7号窗口" in text(page.text)
        assert phone.post(token, {**hidden(page.text), "score": "5"}).status_code == 303
        (rating,) = phone.phone_ratings()
        assert (rating["service"], rating["hall"], rating["window"], rating["score"]) == (
            answer["service"], "H1", "7", 5)
        assert hub.query("SELECT COUNT(*) FROM services") == [(0,)]  # still at the gateway
        phone.close()
