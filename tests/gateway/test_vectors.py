"""The contract's vectors through the real gateway over MQTT: every valid vector of this hall is
committed and acked, every invalid one is quarantined with exactly the vector's reason."""

from __future__ import annotations

import json


def test_every_vector_gets_the_gateways_documented_answer(broker, gateway_factory, device_peers,
                                                          rating_vectors, invalid_rating_vectors):
    ours = [v for v in rating_vectors if v["fields"]["hall"] == "H1"]
    devices = sorted({v["fields"]["dev"] for v in ours})
    assert devices == ["D07", "D08"]  # the vectors this test relies on are still there
    gw = gateway_factory(broker, devices=[{"device": d, "window": str(i)} for i, d in enumerate(devices)])
    peers = {d: device_peers(broker, d) for d in devices}

    for v in ours:
        peer = peers[v["fields"]["dev"]]
        peer.publish("rating", json.dumps(v["payload"], separators=(",", ":")).encode())
        assert peer.wait_ack(v["fields"]["n"])["st"] == "ok", v["name"]
    stored = gw.query("SELECT device, n, payload FROM ratings ORDER BY device, n")
    assert [(r["device"], r["n"]) for r in stored] == sorted((v["fields"]["dev"], v["fields"]["n"]) for v in ours)
    for r in stored:
        [v] = [v for v in ours if (v["fields"]["dev"], v["fields"]["n"]) == (r["device"], r["n"])]
        assert json.loads(r["payload"]) == v["payload"]

    for v in invalid_rating_vectors:
        peers["D07"].publish("rating", v["raw"].encode())
    rows = gw.wait_rows("SELECT reason, payload FROM quarantine ORDER BY rowid", count=len(invalid_rating_vectors))
    assert [r["reason"] for r in rows] == [v["reason"] for v in invalid_rating_vectors]
    assert [bytes(r["payload"]) for r in rows] == [v["raw"].encode()[:4096] for v in invalid_rating_vectors]
