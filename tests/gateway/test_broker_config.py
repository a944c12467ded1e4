"""The hall's production broker config (gateway/broker_config.py), proved on a real Mosquitto.

The broker runs the generated files exactly as written (`Broker(config_file=...)`); when the tests
run as root it drops to the `mosquitto` user before reading them, as in production, so they live in
a directory that user can enter. Negative checks ("A never receives B's prompt") do not sleep: the
same publisher then sends a message the receiver may see, and Mosquitto delivers one publisher's
messages to a subscriber in order, so when that one has arrived a forbidden one would have too.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from gateway import broker_config as bc
from gateway.config import load_settings
from gateway.store import Store
from hcp import cli
from hcp.protocol import sign_rating, topic
from simulator.broker import Broker, free_port
from tests.fixtures.device import device_key

HALL = "H1"
GW_USER, GW_PASSWORD = "gw-H1", "gateway-password-1"
WAIT_S = 10.0
SETTINGS = {"hall": HALL, "hub_url": "http://127.0.0.1:9", "hub_token": "t",
            "gateway_key": "ab" * 32, "queue_token": "q", "admin_token": "a",
            "broker_username": GW_USER, "broker_password": GW_PASSWORD,
            "devices": [{"device": "DA", "window": "1"}, {"device": "DB", "window": "2"}]}


@pytest.fixture
def secure_dir():
    """A directory Mosquitto's own user can enter (pytest's tmp_path is 0700 root)."""
    path = Path(tempfile.mkdtemp(prefix="hcp-broker-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def write_settings(where: Path, **changes: Any) -> Path:
    path = where / "gateway.json"
    path.write_text(json.dumps({**SETTINGS, "data_dir": str(where / "gw-data"), **changes}))
    return path


def broker_config(*args: object, capsys: Any = None) -> tuple[int, str, str]:
    """`hcp gateway broker-config ARGS` in this process: (exit code, stdout, stderr)."""
    if capsys is not None:
        capsys.readouterr()
    code = cli.main(["gateway", "broker-config", *map(str, args)])
    out, err = capsys.readouterr() if capsys is not None else ("", "")
    return code, out, err


def show_password(config: Path, device: str, capsys: Any) -> str:
    code, out, err = broker_config("--config", config, "--show-password", device, capsys=capsys)
    assert code == 0, err
    return out.strip()


@pytest.fixture
def hall_broker(secure_dir, capsys):
    """A real Mosquitto on the generated config: registered DA and DB, DX seen but unregistered."""
    config = write_settings(secure_dir)
    settings = load_settings(config)
    asyncio.run(_registry(settings.db_path, seen="DX"))
    port = free_port()
    code, out, err = broker_config("--config", config, "--out", secure_dir / "broker", "--port",
                                   port, "--bind", "127.0.0.1", capsys=capsys)
    assert code == 0, err
    assert "2 devices" in out and "DX" in err  # DX has no account, and the operator is told
    broker = Broker(secure_dir / "run", port=port,
                    config_file=secure_dir / "broker" / bc.CONF_NAME).start()
    yield RunningBroker(broker.port,
                        {d: show_password(config, d, capsys) for d in ("DA", "DB", "DX")})
    broker.stop()


@dataclass
class RunningBroker:
    port: int
    passwords: dict[str, str]  # from --show-password


async def _registry(db_path: Path, seen: str | None = None,
                    register: tuple[str, str] | None = None) -> None:
    """Change the gateway's registry through its store: a device `seen` on MQTT only, or one
    registered at a window (the store itself does not check ids)."""
    store = await Store.open(db_path)
    try:
        async with store.transaction() as tx:
            if seen is not None:
                await tx.seen(seen, 0.0)
            if register is not None:
                await tx.register_device(*register, 0.0)
    finally:
        await store.close()


class Peer:
    """A paho client logged in as `username`; `.rc` is the broker's CONNACK, `.got` what arrived."""

    def __init__(self, port: int, username: str | None, password: str | None,
                 client_id: str | None = None, subscribe: tuple[str, ...] = ()):
        self.got: list[tuple[str, bytes, bool]] = []
        self.disconnects = 0
        self.rc: Any = None
        self._cond = threading.Condition()
        connected = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311,
                                  client_id=client_id or f"peer-{username}")
        self.client.reconnect_delay_set(5, 5)  # a refused peer must not hammer the broker
        if username is not None:
            self.client.username_pw_set(username, password)

        def on_connect(client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
            self.rc = rc
            connected.set()

        def on_disconnect(*args: Any) -> None:
            with self._cond:
                self.disconnects += 1

        def on_message(client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
            with self._cond:
                self.got.append((msg.topic, bytes(msg.payload), bool(msg.retain)))
                self._cond.notify_all()

        self.client.on_connect, self.client.on_message = on_connect, on_message
        self.client.on_disconnect = on_disconnect
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert connected.wait(WAIT_S), "no CONNACK"
        if self.ok and subscribe:
            done = threading.Event()
            self.client.on_subscribe = lambda *a: done.set()
            self.client.subscribe([(t, 1) for t in subscribe])
            assert done.wait(WAIT_S), "no SUBACK"

    @property
    def ok(self) -> bool:
        return not self.rc.is_failure

    def publish(self, name: str, payload: bytes, retain: bool = False) -> None:
        self.client.publish(name, payload, qos=1, retain=retain).wait_for_publish(WAIT_S)

    def wait(self, name: str, payload: bytes) -> list[tuple[str, bytes]]:
        """Wait for `payload` on `name`; everything received up to then, in order."""
        with self._cond:
            assert self._cond.wait_for(lambda: any(g[:2] == (name, payload) for g in self.got),
                                       WAIT_S), f"never got {name} {payload!r}: {self.got}"
            return [g[:2] for g in self.got]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def peers(hall_broker):
    made: list[Peer] = []

    def make(username: str | None, password: str | None = None, **kw: Any) -> Peer:
        if username is not None and password is None:
            password = GW_PASSWORD if username == GW_USER else hall_broker.passwords[username]
        made.append(Peer(hall_broker.port, username, password, **kw))
        return made[-1]

    yield make
    for p in made:
        p.close()


def t(device: str, suffix: str) -> str:
    return topic(HALL, device, suffix)


GATEWAY_SUBSCRIPTIONS = tuple(f"hcp/v1/{HALL}/+/{s}"
                              for s in ("rating", "status", "health", "cmd/reply"))
DEVICE_SUBSCRIPTIONS = ("ack", "prompt", "cmd")


# ---------------------------------------------------------------------------- on the real broker


def test_only_registered_accounts_with_their_password_get_in(peers, hall_broker):
    refused = [peers(None),                                        # anonymous
               peers("DA", "not-the-password"),                    # wrong password
               peers("DA", hall_broker.passwords["DB"]),           # another device's password
               peers("DX"),                                        # seen on MQTT, never registered
               peers("DZ", "whatever-it-says"),                    # unknown
               peers(GW_USER, hall_broker.passwords["DA"])]        # the gateway with a device's
    assert [p.rc.is_failure for p in refused] == [True] * len(refused)
    assert all(p.rc.getName() in ("Not authorized", "Bad user name or password") for p in refused)
    assert peers("DA").ok and peers("DB").ok and peers(GW_USER).ok


def test_a_device_cannot_publish_as_another_nor_as_the_gateway(peers):
    gateway = peers(GW_USER, subscribe=GATEWAY_SUBSCRIPTIONS)
    b = peers("DB", subscribe=tuple(t("DB", s) for s in DEVICE_SUBSCRIPTIONS))
    a = peers("DA")
    for suffix in ("rating", "status", "health", "cmd/reply"):  # B's device topics
        a.publish(t("DB", suffix), b'{"forged":"' + suffix.encode() + b'"}')
    for suffix in DEVICE_SUBSCRIPTIONS:  # the gateway's topics, to B and to itself
        a.publish(t("DB", suffix), b'{"forged":"to B"}')
        a.publish(t("DA", suffix), b'{"forged":"to A"}')
    a.publish(t("DA", "rating"), b'{"own":1}')  # allowed, and after every forgery
    assert gateway.wait(t("DA", "rating"), b'{"own":1}') == [(t("DA", "rating"), b'{"own":1}')]
    b.publish(t("DB", "rating"), b'{"own":2}')  # B's own topics still work
    assert gateway.wait(t("DB", "rating"), b'{"own":2}') == [(t("DA", "rating"), b'{"own":1}'),
                                                             (t("DB", "rating"), b'{"own":2}')]
    gateway.publish(t("DB", "prompt"), b'{"real":1}')  # after A's forged prompt to B
    assert b.wait(t("DB", "prompt"), b'{"real":1}') == [(t("DB", "prompt"), b'{"real":1}')]


def test_a_device_reads_only_its_own_acks_prompts_and_commands(peers):
    b = peers("DB", subscribe=tuple(t("DB", s) for s in DEVICE_SUBSCRIPTIONS))
    b.publish(t("DB", "status"), b'{"v":1,"state":"online","boot":1,"conn":1}', retain=True)
    a = peers("DA", subscribe=(*(t("DB", s) for s in DEVICE_SUBSCRIPTIONS),
                               t("DB", "status"), f"hcp/v1/{HALL}/#", "#",
                               *(t("DA", s) for s in DEVICE_SUBSCRIPTIONS)))
    gateway = peers(GW_USER, subscribe=GATEWAY_SUBSCRIPTIONS)
    gateway.wait(t("DB", "status"), b'{"v":1,"state":"online","boot":1,"conn":1}')  # retained
    for suffix in DEVICE_SUBSCRIPTIONS:
        gateway.publish(t("DB", suffix), f'{{"for":"DB","{suffix}":1}}'.encode())
    for suffix in DEVICE_SUBSCRIPTIONS:
        gateway.publish(t("DA", suffix), f'{{"for":"DA","{suffix}":1}}'.encode())
    got = a.wait(t("DA", "cmd"), b'{"for":"DA","cmd":1}')
    assert sorted(set(got)) == sorted((t("DA", s), f'{{"for":"DA","{s}":1}}'.encode())
                                      for s in DEVICE_SUBSCRIPTIONS)
    assert len(b.wait(t("DB", "cmd"), b'{"for":"DB","cmd":1}')) == 3  # B got its own, A none of them


def test_a_device_cannot_take_over_the_gateways_or_anothers_session(peers):
    gateway = peers(GW_USER, subscribe=GATEWAY_SUBSCRIPTIONS)
    b = peers("DB", client_id="dev-DB", subscribe=(t("DB", "prompt"),))
    # With DA's login but the others' client ids: the broker names the session after the username.
    intruders = [peers("DA", client_id=GW_USER), peers("DA", client_id="dev-DB")]
    assert all(p.ok for p in intruders)
    gateway.publish(t("DB", "prompt"), b'{"still":1}')
    b.wait(t("DB", "prompt"), b'{"still":1}')
    b.publish(t("DB", "rating"), b'{"still":2}')
    gateway.wait(t("DB", "rating"), b'{"still":2}')
    assert (gateway.disconnects, b.disconnects) == (0, 0)


def test_real_gateway_and_firmware_over_the_generated_config(secure_dir, capsys, gateway_factory,
                                                             device_factory):
    """The gateway logs in with its account and prompts and acks; the real firmware logs in with
    the password `--show-password` gives (username = its device id, the firmware's default); a
    device registered at run time gets in after the config is generated again and SIGHUP."""
    port = free_port()
    broker = Broker(secure_dir / "run", port=port, config_file=secure_dir / "broker" / bc.CONF_NAME)
    gw = gateway_factory(broker, start=False, broker_username=GW_USER, broker_password=GW_PASSWORD,
                         devices=SETTINGS["devices"])
    config = secure_dir / "gateway.json"
    config.write_text(json.dumps(gw.settings))
    generate = ("--config", config, "--out", secure_dir / "broker", "--port", port,
                "--bind", "127.0.0.1")
    assert broker_config(*generate, capsys=capsys)[0] == 0
    broker.start()
    try:
        gw.start()
        gw.wait_status(lambda st: st["mqtt"]["connected"])
        device = device_factory("DA", window="1", broker=broker,
                                mqtt_pass=show_password(config, "DA", capsys))
        device.wait_event("online")
        gw.wait_status(lambda st: any(d["device"] == "DA" and d["presence"] == "online"
                                      for d in st["devices"]))
        session = gw.post_event(window="1", ticket="A001")["session"]
        device.wait_state("prompt")
        device.tap(5)
        device.wait_event("ack", lambda d: d == {"n": 1, "st": "ok"})
        rows = gw.query("SELECT sess, score FROM ratings WHERE device = 'DA'")
        assert [tuple(r) for r in rows] == [(session, 5)]

        gw.register_device("DC", "3")  # at run time: in the gateway's file only
        dc_password = show_password(config, "DC", capsys)
        early = Peer(port, "DC", dc_password)
        early.close()
        assert not early.ok  # not in the broker's files yet
        code, out, _ = broker_config(*generate, capsys=capsys)
        assert code == 0 and "3 devices" in out
        assert broker.proc is not None
        broker.proc.send_signal(signal.SIGHUP)  # Mosquitto rereads passwd and acl
        dc = _wait_connected(port, "DC", dc_password)
        key = device_key("DC")
        rating = sign_rating(key, HALL, "DC", 1, 1, 1000, None, 3)
        dc.subscribe_and_publish(t("DC", "ack"), t("DC", "rating"),
                                 json.dumps(rating.payload(), separators=(",", ":")).encode())
        assert json.loads(dc.wait_any(t("DC", "ack")))["st"] == "ok"
        dc.close()
    finally:
        gw.close()
        broker.stop()


class _Device(Peer):
    def subscribe_and_publish(self, sub: str, name: str, payload: bytes) -> None:
        done = threading.Event()
        self.client.on_subscribe = lambda *a: done.set()
        self.client.subscribe(sub, 1)
        assert done.wait(WAIT_S)
        self.publish(name, payload)

    def wait_any(self, name: str) -> bytes:
        with self._cond:
            assert self._cond.wait_for(lambda: any(g[0] == name for g in self.got), WAIT_S), self.got
            return next(g[1] for g in self.got if g[0] == name)


def _wait_connected(port: int, username: str, password: str) -> _Device:
    """The SIGHUP reload is asynchronous: try until the broker knows the account."""
    for _ in range(50):
        peer = _Device(port, username, password)
        if peer.ok:
            return peer
        peer.close()
    raise AssertionError(f"{username} never accepted after SIGHUP")


# ---------------------------------------------------------------------------- the files


def test_password_hash_is_mosquittos_own_format():
    # Written by `mosquitto_passwd -b` 2.0.11 for alice / secret.
    line = ("alice:$7$101$RXiZPZrP95tfNa03$2OODZ9R8mRwNZVzqlSkJsdC6hKgvJ04/2mVwoaUWS+Ay+fj7fL6zbwdClh"
            "LmS8W904rUgEG53OKpHK1rmwSk3g==")
    encoded = line.split(":", 1)[1]
    assert bc.check_password("secret", encoded) and not bc.check_password("Secret", encoded)
    assert bc.hash_password("secret", base64.b64decode("RXiZPZrP95tfNa03")) == encoded
    with pytest.raises(bc.BrokerConfigError, match=r"\$7\$"):
        bc.check_password("secret", "$6$rounds=5000$abc$def")


@pytest.mark.skipif(shutil.which("mosquitto_passwd") is None,
                    reason="mosquitto_passwd not installed")
def test_hashes_agree_with_mosquitto_passwd_today(tmp_path):
    pw_file = tmp_path / "pw"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(pw_file), "D07", "0123456789abcdef"],
                   check=True, capture_output=True)
    user, encoded = pw_file.read_text().strip().split(":", 1)
    assert user == "D07" and bc.check_password("0123456789abcdef", encoded)
    salt = base64.b64decode(encoded.split("$")[3])
    assert bc.hash_password("0123456789abcdef", salt) == encoded


def _settings(tmp_path: Path, **changes: Any):
    return load_settings(write_settings(tmp_path, **changes))


def test_device_passwords_are_derived_per_hall_device_and_secret(tmp_path):
    s = _settings(tmp_path)
    secret = bc.broker_secret(s)
    pa = bc.device_password(secret, HALL, "DA")
    assert len(pa) == bc.DEVICE_PASSWORD_HEX and int(pa, 16) >= 0
    assert pa == bc.device_password(secret, HALL, "DA")  # regenerable from the registry
    others = {bc.device_password(secret, HALL, "DB"), bc.device_password(secret, "H2", "DA")}
    assert len({pa, *others}) == 3
    other_key = bc.broker_secret(_settings(tmp_path, gateway_key="cd" * 32))
    own_secret = bc.broker_secret(_settings(tmp_path, broker_secret="x" * 16))
    assert len({pa, bc.device_password(other_key, HALL, "DA"),
                bc.device_password(own_secret, HALL, "DA")}) == 3
    with pytest.raises(ValueError):
        _settings(tmp_path, broker_secret="too-short")


def test_files_hold_one_account_per_device_and_its_own_topics_only(tmp_path):
    s = _settings(tmp_path)
    hb = bc.plan(s, ["DB", "DA", "DA"], port=1884, bind="10.0.0.2")
    lines = hb.password_file().splitlines()
    assert [ln.split(":", 1)[0] for ln in lines] == [GW_USER, "DA", "DB"]
    secret = bc.broker_secret(s)
    for ln in lines:
        user, encoded = ln.split(":", 1)
        password = GW_PASSWORD if user == GW_USER else bc.device_password(secret, HALL, user)
        assert bc.check_password(password, encoded)
    acl = hb.acl_file()
    assert all(ln.startswith("#") or not ln for ln in acl.split("\nuser ", 1)[0].splitlines())
    block = acl.split("\nuser DA\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert block == ["topic write hcp/v1/H1/DA/rating", "topic write hcp/v1/H1/DA/status",
                     "topic write hcp/v1/H1/DA/health", "topic write hcp/v1/H1/DA/cmd/reply",
                     "topic read hcp/v1/H1/DA/ack", "topic read hcp/v1/H1/DA/prompt",
                     "topic read hcp/v1/H1/DA/cmd"]
    gw_block = acl.split(f"\nuser {GW_USER}\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert "topic read hcp/v1/H1/+/rating" in gw_block and "topic write hcp/v1/H1/+/prompt" in gw_block
    conf = hb.mosquitto_conf(tmp_path / "out", tmp_path / "out" / "data").splitlines()
    for want in ("listener 1884 10.0.0.2", "allow_anonymous false", "persistence true",
                 "use_username_as_clientid true", f"max_inflight_messages {bc.MAX_INFLIGHT}",
                 f"password_file {tmp_path / 'out' / 'passwd'}", f"acl_file {tmp_path / 'out' / 'acl'}",
                 f"persistence_location {tmp_path / 'out' / 'data'}/",
                 f"autosave_interval {bc.AUTOSAVE_INTERVAL_S}"):
        assert want in conf
    assert bc.MAX_INFLIGHT >= 500 and "max_inflight_messages 20" not in conf


def test_writing_is_atomic_private_and_idempotent(tmp_path, capsys):
    config = write_settings(tmp_path)
    out = tmp_path / "out"
    (out).mkdir()
    (out / ".passwd.tmp").write_text("left by a crash")
    me = pwd.getpwuid(os.geteuid()).pw_name
    code, stdout, _ = broker_config("--config", config, "--out", out, "--owner", me, capsys=capsys)
    assert code == 0 and stdout.count("written") == 3
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()}
    assert modes == {"passwd": 0o600, "acl": 0o600, "mosquitto.conf": 0o644, "data": 0o700}
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    code, stdout, _ = broker_config("--config", config, "--out", out, "--owner", me, capsys=capsys)
    assert code == 0 and stdout.count("unchanged") == 3
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    config = write_settings(tmp_path,
                            devices=[*SETTINGS["devices"], {"device": "DC", "window": "3"}])
    code, stdout, _ = broker_config("--config", config, "--out", out, capsys=capsys)
    assert code == 0 and "3 devices" in stdout and "passwd  written" in stdout
    assert "DC:" in (out / "passwd").read_text()


@pytest.mark.parametrize("device, said", [("D/7", "'/'"), ("D+7", "'+'"), ("D#", "'#'"),
                                          ("D 7", "whitespace"), ("D\t7", "whitespace"),
                                          ("D:7", "':'"), ("", "empty"), ("D\x007", "control"),
                                          ("点7", "not a device id"), ("-D7", "not a device id")])
def test_a_device_id_that_cannot_be_a_username_is_refused(tmp_path, device, said):
    with pytest.raises(bc.BrokerConfigError, match=re.escape(said)):
        bc.check_device_id(device)
    with pytest.raises(bc.BrokerConfigError, match=re.escape(said)):
        bc.plan(_settings(tmp_path), ["DA", device])


def test_a_bad_id_in_the_registry_stops_generation_and_keeps_the_old_files(tmp_path, capsys):
    config = write_settings(tmp_path)
    out = tmp_path / "out"
    assert broker_config("--config", config, "--out", out, capsys=capsys)[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    asyncio.run(_registry(load_settings(config).db_path, register=("D/9", "9")))  # as a bug might
    code, stdout, stderr = broker_config("--config", config, "--out", out, capsys=capsys)
    assert code == 2 and stdout == ""
    assert "device id 'D/9' contains '/'" in stderr
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


@pytest.mark.parametrize("changes, said", [
    ({"broker_username": None}, "needs its own broker account"),
    ({"broker_password": None}, "needs its own broker account"),
    ({"broker_username": "gw H1"}, "broker_username 'gw H1'"),
    ({"broker_username": "DA"}, "also a device id"),
    ({"broker_password": "short"}, "shorter than 12"),
])
def test_the_gateways_account_must_be_usable(tmp_path, capsys, changes, said):
    config = write_settings(tmp_path, **changes)
    code, stdout, stderr = broker_config("--config", config, "--out", tmp_path / "out", capsys=capsys)
    assert code == 2 and said in stderr and not (tmp_path / "out").exists()


def test_show_password_is_the_one_in_the_password_file(tmp_path, capsys):
    config = write_settings(tmp_path)
    assert broker_config("--config", config, "--out", tmp_path / "out", capsys=capsys)[0] == 0
    hashes = dict(ln.split(":", 1) for ln in (tmp_path / "out" / "passwd").read_text().splitlines())
    code, stdout, stderr = broker_config("--config", config, "--show-password", "DB", capsys=capsys)
    assert code == 0 and stderr == "" and bc.check_password(stdout.strip(), hashes["DB"])
    code, stdout, stderr = broker_config("--config", config, "--show-password", "DQ", capsys=capsys)
    assert code == 0 and "DQ is not registered" in stderr and len(stdout.strip()) == 32
    code, _, stderr = broker_config("--config", config, "--show-password", "D/1", capsys=capsys)
    assert code == 2 and "contains '/'" in stderr


def test_command_line_errors_are_clear(tmp_path, capsys):
    config = write_settings(tmp_path)
    code, _, stderr = broker_config("--config", config, capsys=capsys)
    assert code == 2 and "--out DIR is required" in stderr
    code, _, stderr = broker_config("--config", tmp_path / "nope.json", "--out", tmp_path,
                                    capsys=capsys)
    assert code == 2 and "config file not found" in stderr
    code, _, stderr = broker_config("--config", config, "--out", tmp_path / "o", "--owner",
                                    "no-such-user-hcp", capsys=capsys)
    assert code == 2 and "no such user" in stderr
    code, _, stderr = broker_config("--config", config, "--out", tmp_path / "o", "--port", "70000",
                                    capsys=capsys)
    assert code == 2 and "not a TCP port" in stderr
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, _, stderr = broker_config("--config", config, "--out", blocker / "sub", capsys=capsys)
    assert code == 1 and "broker-config:" in stderr


def test_hcp_gateway_still_runs_the_gateway_and_lists_the_action():
    proc = subprocess.run([sys.executable, "-m", "hcp.cli", "gateway", "--help"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and "--broker-port" in proc.stdout
    assert "hcp gateway broker-config --help" in proc.stdout
