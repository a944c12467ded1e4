"""Provisioning one counter device (docs/provisioning.md): its config over the serial console, a
fresh key (generated here, registered with the hub, written to the device; never shown), its
registration with the hall's gateway, a check that it comes online, and the self-test with the
technician; or the same for a replacement, which then retires the device it replaces.

Every step is safe to repeat, so a run that stopped half-way (a cable pulled, the hub unreachable)
is finished by running the same command again: the config is written whole or not at all, a new key
replaces the old one at the hub and on the device (the hub keeps old keys for the ratings they
signed), and registrations are idempotent. The order keeps a device that is already working
working until the end: the new key is registered at the hub before the device starts using it.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from hcp.protocol import key_id
from hcp.registration import (
    RegistrationError,
    Service,
    gateway_device,
    register_at_gateway,
    register_at_hub,
    retire_at_gateway,
    retire_at_hub,
)
from hcp.serial_console import Console, ConsoleError

LEDS = ("b1", "b2", "b3", "b4", "b5", "ok", "err")  # the order the self-test lights them
BUTTON_NAMES = {"5": "5 非常满意", "4": "4 满意", "3": "3 基本满意", "2": "2 不满意",
                "1": "1 非常不满意", "invite": "invite (staff)"}
SELFTEST_LED_S = 0.7  # console.py's SELFTEST_LED_MS
ONLINE_TIMEOUT_S = 30.0
# Config keys a site sets on every device of the hall (the rest have the firmware's defaults).
SITE_KEYS = ("broker_host", "broker_port", "mqtt_user", "mqtt_pass", "wifi_ssid", "wifi_pass", "lang",
             "invite")


class Technician(Protocol):
    """The person at the device: told what happens, asked to press buttons and to say what the
    lights did. The CLI asks on the terminal; tests press through the simulated device."""

    def say(self, text: str) -> None: ...

    def press(self, button: str) -> None:
        """The device now waits for `button` to be pressed."""

    def confirm(self, question: str) -> bool: ...

    def ask(self, question: str) -> str: ...


@dataclass(frozen=True)
class Site:
    """One hall: where its gateway and the hub are, and the config every device there gets."""

    hall: str
    gateway: Service
    hub: Service
    device_config: dict = field(default_factory=dict)  # SITE_KEYS


@dataclass
class Step:
    name: str
    ok: bool
    detail: str = ""


@dataclass
class Checklist:
    device: str
    steps: list[Step] = field(default_factory=list)
    seconds: float = 0.0
    stopped: str | None = None  # why the run stopped early (then re-run the same command)
    doing: str = "device answers"  # the step under way: named as failed if it raises

    def add(self, name: str, ok: bool, detail: str = "") -> bool:
        self.steps.append(Step(name, ok, detail))
        return ok

    @property
    def passed(self) -> bool:
        return self.stopped is None and all(s.ok for s in self.steps)

    def text(self) -> str:
        lines = [f"device {self.device}: checklist"]
        for s in self.steps:
            lines.append(f"  [{'PASS' if s.ok else 'FAIL'}] {s.name}" + (f" — {s.detail}" if s.detail else ""))
        if self.stopped:
            lines.append(f"  stopped: {self.stopped}")
            lines.append("  Fix that and run the same command again: every step is safe to repeat.")
        verdict = "PASSED" if self.passed else "FAILED"
        lines.append(f"{verdict} in {self.seconds:.0f} s")
        return "\n".join(lines)


class Stop(Exception):
    """A step failed in a way that makes the next ones pointless."""


def provision(console: Console, site: Site, device: str, window: str | None, who: Technician,
              replace: str | None = None, force: bool = False, selftest_s: int = 15,
              online_timeout: float = ONLINE_TIMEOUT_S,
              clock: Callable[[], float] = time.monotonic) -> Checklist:
    """Set up the device on `console` as `device` at `window` (with `replace`: the window of the
    device it replaces, unless given) and self-test it. -> the checklist; never raises for a
    failed step (the checklist says which and why)."""
    started = clock()
    check = Checklist(device)
    try:
        _run(console, site, device, window, who, check, replace, force, selftest_s, online_timeout)
    except Stop as exc:
        check.stopped = str(exc)
    except (ConsoleError, RegistrationError) as exc:
        check.add(check.doing, False, str(exc))
        check.stopped = str(exc)
    check.seconds = clock() - started
    return check


def _run(con: Console, site: Site, device: str, window: str | None, who: Technician,
         check: Checklist, replace: str | None, force: bool, selftest_s: int,
         online_timeout: float) -> None:
    # 1. the device answers; it is blank, ours from a run that stopped, or (refused) another one
    con.probe()
    info = con.ask("info")
    assert isinstance(info, dict)
    was = info.get("dev") or ""
    if was and was != device and info.get("provisioned") and not force:
        raise Stop(f"this device is already provisioned as {was} (hall {info.get('hall')}, window "
                   f"{info.get('window')}); to make it {device}, add --force")
    check.add("device answers", True, f"board {info.get('board')}, firmware {info.get('fw')}")
    if was == device and not info.get("provisioned"):
        who.say(f"{device} was set up part-way before: finishing it")

    # the window: given, or the replaced device's
    check.doing = "window"
    if replace is not None:
        old = gateway_device(site.gateway, replace)
        if window is None:
            if old is None or not old.get("window"):
                raise Stop(f"{replace} is not registered at the gateway: give --window")
            window = old["window"]
    if not window:
        raise Stop("no window: give --window")

    check.doing = "config written"
    # 2. config, all keys at once (the device writes it whole or not at all)
    wanted = {k: v for k, v in site.device_config.items() if k in SITE_KEYS and v is not None}
    wanted.update({"dev": device, "hall": site.hall, "window": window})
    con.ask("config " + json.dumps(wanted, ensure_ascii=False, separators=(",", ":")))
    info = con.ask("info")
    assert isinstance(info, dict)
    shown = {k: v for k, v in wanted.items() if k not in ("mqtt_pass", "wifi_pass")}
    wrong = [k for k, v in shown.items() if info["config"].get(k) != v]
    if not check.add("config written", not wrong, f"hall {site.hall}, window {window}, "
                     f"broker {info['config'].get('broker_host')}:{info['config'].get('broker_port')}"
                     + (f"; differs: {', '.join(wrong)}" if wrong else "")):
        raise Stop("the device did not keep its config")

    check.doing = "key registered at the hub"
    # 3. a fresh key: registered at the hub first, then given to the device (never shown)
    key = secrets.token_bytes(32)
    kid = register_at_hub(site.hub, device, site.hall, window, key)
    if not check.add("key registered at the hub", kid == key_id(key), f"key id {kid}"):
        raise Stop("the hub computed another key id: the hub and this tool disagree on the protocol")
    check.doing = "registered at the gateway"
    register_at_gateway(site.gateway, device, window)
    check.add("registered at the gateway", True, f"window {window}")
    check.doing = "key written to the device"
    res = con.ask("key " + key.hex())
    del key
    got = res.get("kid") if isinstance(res, dict) else None
    if not check.add("key written to the device", got == kid, f"key id {got}"):
        raise Stop("the device holds another key than the hub")

    check.doing = "online at the gateway"
    # 4. it connects with the new config and key
    online = _wait_online(site.gateway, device, online_timeout)
    check.add("online at the gateway", online,
              "" if online else f"not online within {online_timeout:g} s: check Wi-Fi and broker "
              f"settings (`hcp gateway status`), then run again")

    check.doing = "self-test"
    # 5. self-test with the technician
    _selftest(con, who, check, selftest_s)

    # 6. a replacement takes over: the old device is retired
    if replace is not None:
        check.doing = f"{replace} retired"
        was_at = retire_at_gateway(site.gateway, replace)
        check.add(f"{replace} retired", True,
                  f"was at window {was_at}; its later messages are refused" if was_at
                  else "already retired or not registered")
        check.doing = f"{replace} retired at the hub"
        since = retire_at_hub(site.hub, replace)
        check.add(f"{replace} retired at the hub", True,
                  f"since {since}: the hub refuses what its gateway receives from it later" if since
                  else "not registered at the hub")


def _wait_online(gateway: Service, device: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        row = gateway_device(gateway, device)
        if row is not None and row.get("presence") == "online" and row.get("registered"):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.5)


def _selftest(con: Console, who: Technician, check: Checklist, seconds: int) -> None:
    who.say("Self-test: watch the lights, they come on one after another: " + " ".join(LEDS))

    def event(ev: dict) -> None:
        step = ev.get("step")
        if step == "press":
            name = str(ev.get("button"))
            who.say(f"Press button {BUTTON_NAMES.get(name, name)}")
            who.press(name)
        elif step == "pressed":
            if ev.get("ok"):
                who.say("  ok")
            elif ev.get("got") is None:
                who.say("  nothing pressed in time")
            else:
                who.say(f"  that was {ev.get('got')}")

    budget = len(LEDS) * SELFTEST_LED_S + 6 * seconds + 10
    res = con.ask(f"selftest {seconds}", timeout=budget, on_event=event)
    assert isinstance(res, dict)
    dark: set[str] = set()
    if not who.confirm("Did every light come on, one after another?"):
        answer = who.ask("Which stayed dark? (names, e.g. b3 err)")
        dark = {w for w in answer.replace(",", " ").split() if w in LEDS} or set(LEDS)
    for led in res.get("leds", LEDS):
        check.add(f"light {led}", led not in dark, "confirmed" if led not in dark else "stayed dark")
    buttons = res.get("buttons", {})
    # in the order they were asked for (a MicroPython dict keeps no order)
    for name in sorted(buttons, key=lambda b: list(BUTTON_NAMES).index(b) if b in BUTTON_NAMES else 9):
        ok = buttons[name]
        check.add(f"button {BUTTON_NAMES.get(name, name)}", bool(ok), "" if ok else "not pressed, or another")
    stuck = res.get("stuck", [])
    check.add("no button stuck", not stuck, ", ".join(stuck))
