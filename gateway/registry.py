"""The device registry beyond registration: key ids, presence with a heartbeat timeout, clock offsets,
boots, rating counters, health snapshots for the hub, and the alerts they raise.

Two ways in:
- hooks that the writer (`ingest.py`) calls inside its transaction for every status, health,
  command reply and newly stored rating, so what they record commits (or rolls back) with the
  message itself;
- `run()`, a background task that every `registry_sweep_s` does what depends on time passing:
  heartbeat timeouts, the `offline` and `counter_gap` alerts, expiring `reboots`, asking each newly
  connected device for its `info` (key id, firmware), and the periodic health snapshots.

A device is judged only while the gateway's own MQTT link is up, and only from when it came up: a
gateway that could not hear anything has no grounds to call a device silent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Coroutine
from typing import Any

from gateway.alerts import (
    CLOCK_OFFSET,
    COUNTER_GAP,
    OFFLINE,
    OUTBOX_GROWING,
    REBOOTS,
    STUCK_BUTTON,
    AlertBook,
    ClockSample,
    clock_rule,
    describe_gaps,
    outbox_rule,
    split_gap,
    stuck_rule,
)
from gateway.config import GatewaySettings
from gateway.ingest import wall_iso
from gateway.presence import BY_STATUS, BY_TIMEOUT, NEVER_SEEN, effective
from gateway.store import Store, Tx
from hcp.protocol import KID_RE, Rating, Status, encode_cmd, topic

log = logging.getLogger(__name__)

LINK_SETTLE_S = 3.0  # retained statuses arrive right after we subscribe: judge presence after that
MIN_PERIOD_S, MAX_PERIOD_S = 1.0, 86400.0  # health intervals outside this are not a period
INFO_PREFIX = "info-"  # id of the `info` command sent to every new connection
# A new rating's device_watch row and where its counter landed among the stored ones, in one
# statement: the hook runs for every rating, inside the writer's group commit.
_RATING_LOOKUP = (
    "SELECT w.*, (SELECT 1 FROM ratings WHERE device = ? AND n > ? LIMIT 1) AS above, "
    "(SELECT n FROM ratings WHERE device = ? AND n < ? ORDER BY n DESC LIMIT 1) AS below "
    "FROM device_watch w WHERE w.device = ?")


def _clock_text(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


class Registry:
    def __init__(self, store: Store, settings: GatewaySettings,
                 publish: Callable[[str, bytes], object], on_outbox: Callable[[], None],
                 link: Callable[[], tuple[bool, int]], clock: Callable[[], float] = time.time):
        """`link()` -> (MQTT connected, number of connects so far); `publish` sends to a device."""
        self.store = store
        self.s = settings
        self.hall = settings.hall
        self.alerts = AlertBook(settings.hall, settings.hub_health)
        self._publish = publish
        self._on_outbox = on_outbox
        self._link = link
        self._clock = clock
        self._link_connects = -1
        self.link_up_since: float | None = None
        self.sweeps = 0

    # ------------------------------------------------------------------ hooks (writer's transaction)

    async def on_status(self, tx: Tx, device: str, status: Status, outcome: str, now: float) -> None:
        """After `apply_presence`: a newer status resets the heartbeat timeout and counts the boot."""
        await self._guard(tx, device, self._status(tx, device, status, outcome, now))

    async def on_health(self, tx: Tx, device: str, health: dict, now: float) -> None:
        await self._guard(tx, device, self._health(tx, device, health, now))

    async def on_cmd_reply(self, tx: Tx, device: str, reply: dict, now: float) -> None:
        await self._guard(tx, device, self._cmd_reply(tx, device, reply, now))

    async def on_rating(self, tx: Tx, rating: Rating, now: float) -> None:
        """A rating newly stored (not a duplicate, not a conflict)."""
        await self._guard(tx, rating.dev, self._rating(tx, rating, now))

    async def _guard(self, tx: Tx, device: str, work: Coroutine[Any, Any, None]) -> None:
        """Run a hook in its own savepoint: a bug in the bookkeeping is logged and counted
        (`registry.errors`) and undone alone, never costing the message its commit. A failing
        database still fails the batch (the writer retries it). On the writer's fast path
        (`tx.isolate` false) an exception fails the group, which is then run again isolated."""
        if not tx.isolate:
            await work
            return
        await tx.savepoint("registry")
        try:
            await work
        except sqlite3.OperationalError:
            raise
        except Exception:
            log.exception("registry bookkeeping for %s failed", device, extra={"device": device})
            await tx.rollback_to("registry")
            await tx.count("registry.errors")
        await tx.release("registry")

    async def _status(self, tx: Tx, device: str, status: Status, outcome: str, now: float) -> None:
        if outcome != "applied":
            return
        w = await self._watch(tx, device, now)
        await self._boot(tx, device, w, status.boot, now)
        if w["timed_out_at"] is not None:
            await tx.run("UPDATE device_watch SET timed_out_at = NULL WHERE device = ?", (device,))
        if status.state == "online":
            await self.alerts.clear(tx, device, OFFLINE, now)

    async def _health(self, tx: Tx, device: str, health: dict, now: float) -> None:
        w = await self._watch(tx, device, now)
        await self._alive(tx, device, w, now)
        boot, up, ob = health["boot"], health["up"], health["ob"]
        await self._boot(tx, device, w, boot, now)
        period = w["health_period_s"]
        if w["clock_boot"] == boot and w["clock_up"] is not None:
            interval = (up - w["clock_up"]) / 1000
            if MIN_PERIOD_S <= interval <= MAX_PERIOD_S:
                period = interval
        prev = (ClockSample(w["clock_boot"], w["clock_up"], w["offset_ms"])
                if w["clock_boot"] is not None else None)
        sample = ClockSample(boot, up, round(now * 1000) - up)
        steady, clock = clock_rule(prev, sample, w["clock_steady"], self.s.alert_clock_jump_ms)
        await self.alerts.apply(tx, device, CLOCK_OFFSET, clock, now)
        await self.alerts.apply(tx, device, STUCK_BUTTON, stuck_rule(health.get("stuck")), now)
        rising, backlog = outbox_rule(ob, w["ob_last"], w["ob_rising"], self.s.alert_outbox_max,
                                      self.s.alert_outbox_rising)
        await self.alerts.apply(tx, device, OUTBOX_GROWING, backlog, now)
        await tx.run("UPDATE device_watch SET health_period_s = ?, clock_boot = ?, clock_up = ?, "
                     "offset_ms = ?, offset_at = ?, clock_steady = ?, ob_last = ?, ob_rising = ? "
                     "WHERE device = ?", (period, boot, up, sample.offset_ms, now, steady, ob,
                                          rising, device))

    async def _cmd_reply(self, tx: Tx, device: str, reply: dict, now: float) -> None:
        w = await self._watch(tx, device, now)
        await self._alive(tx, device, w, now)
        res = reply.get("res")
        if reply.get("ok") is True and isinstance(res, dict):
            kid = res.get("kid")
            if isinstance(kid, str) and KID_RE.fullmatch(kid):
                await self._key(tx, device, w, kid, "info", now)

    async def _rating(self, tx: Tx, rating: Rating, now: float) -> None:
        """On the hot path: in the common case (same key, same boot, next counter, device not
        timed out) it only reads."""
        device, n = rating.dev, rating.n
        w = await tx.one(_RATING_LOOKUP, (device, n, device, n, device))  # one statement
        if w is None:  # the device's first message of any kind
            await self._watch(tx, device, now)
            w = await tx.one(_RATING_LOOKUP, (device, n, device, n, device))
        await self._alive(tx, device, w, now)
        await self._key(tx, device, w, rating.kid, "rating", now)
        await self._boot(tx, device, w, rating.boot, now)
        await self._counter(tx, device, n, w["above"], w["below"], now)

    # ------------------------------------------------------------------ hook helpers

    async def _watch(self, tx: Tx, device: str, now: float) -> Any:
        row = await tx.one("SELECT * FROM device_watch WHERE device = ?", (device,))
        if row is not None:
            return row
        await tx.run("INSERT INTO device_watch (device, created_at) VALUES (?, ?)", (device, now))
        return await tx.one("SELECT * FROM device_watch WHERE device = ?", (device,))

    async def _alive(self, tx: Tx, device: str, w: Any, now: float) -> None:
        """The device spoke: a heartbeat timeout is over."""
        if w["timed_out_at"] is None:
            return
        await tx.run("UPDATE device_watch SET timed_out_at = NULL WHERE device = ?", (device,))
        await tx.count("presence.back")
        log.info("device %s heard again after its heartbeat timeout", device,
                 extra={"device": device})
        row = await tx.one("SELECT presence FROM devices WHERE device = ?", (device,))
        if row is not None and row["presence"] == "online":
            await self.alerts.clear(tx, device, OFFLINE, now)

    async def _key(self, tx: Tx, device: str, w: Any, kid: str, source: str, now: float) -> None:
        """Record `kid` as the device's current key when it is not already."""
        if w["kid"] == kid:
            return
        await tx.run("INSERT INTO device_keys (device, kid, source, first_seen, last_seen) "
                     "VALUES (?, ?, ?, ?, ?) ON CONFLICT (device, kid) DO UPDATE SET "
                     "source = excluded.source, last_seen = excluded.last_seen",
                     (device, kid, source, now, now))
        await tx.run("UPDATE device_watch SET kid = ? WHERE device = ?", (kid, device))

    async def _boot(self, tx: Tx, device: str, w: Any, boot: int, now: float) -> None:
        """Record a boot count higher than any seen; raise `reboots` when they come too fast."""
        boot_max = w["boot_max"]
        if boot_max is not None and boot <= boot_max:
            return
        rise = 0 if boot_max is None else boot - boot_max
        await tx.run("INSERT OR REPLACE INTO device_boots (device, boot, seen_at, rise) "
                     "VALUES (?, ?, ?, ?)", (device, boot, now, rise))
        await tx.run("UPDATE device_watch SET boot_max = ? WHERE device = ?", (boot, device))
        if rise == 0:
            return
        window = self.s.alert_reboots_window_s
        row = await tx.one("SELECT COALESCE(SUM(rise), 0) AS r FROM device_boots "
                           "WHERE device = ? AND seen_at >= ?", (device, now - window))
        if row["r"] >= self.s.alert_reboots:
            await self.alerts.raise_(tx, device, REBOOTS,
                                     f"boot count rose by {row['r']} within {window / 60:g} min "
                                     f"(now boot {boot})", now)

    async def _counter(self, tx: Tx, device: str, n: int, above: int | None, below: int | None,
                       now: float) -> None:
        """Keep `rating_gaps` equal to the counters skipped since the first rating seen here.
        Rating `n` is already in `ratings`; `above` (any higher n stored?) and `below` (the next
        lower n) come from two index seeks there (`_RATING_LOOKUP`)."""
        if above is None:  # the highest so far: a jump past the previous highest is a new gap
            if below is not None and n > below + 1:
                await tx.run("INSERT INTO rating_gaps (device, n_from, n_to, noticed_at) "
                             "VALUES (?, ?, ?, ?)", (device, below + 1, n - 1, now))
            return
        gap = await tx.one("SELECT n_from, n_to, noticed_at FROM rating_gaps WHERE device = ? "
                           "AND n_from <= ? ORDER BY n_from DESC LIMIT 1", (device, n))
        if gap is None or gap["n_to"] < n:
            return  # below the first counter seen here (older ratings resent): no gap to fill
        await tx.run("DELETE FROM rating_gaps WHERE device = ? AND n_from = ?", (device, gap["n_from"]))
        for a, b in split_gap(gap["n_from"], gap["n_to"], n):
            await tx.run("INSERT INTO rating_gaps (device, n_from, n_to, noticed_at) "
                         "VALUES (?, ?, ?, ?)", (device, a, b, gap["noticed_at"]))
        left = [(g["n_from"], g["n_to"]) for g in await tx.all(
            "SELECT n_from, n_to FROM rating_gaps WHERE device = ? ORDER BY n_from", (device,))]
        if left:
            await self.alerts.refresh(tx, device, COUNTER_GAP, describe_gaps(left), now)
        else:
            await self.alerts.clear(tx, device, COUNTER_GAP, now)

    # ------------------------------------------------------------------ operator

    async def clear_alert(self, alert_id: int, by: str) -> dict | None:
        """An operator clears an open alert. For `counter_gap` that also forgets the device's
        current gaps (the missing ratings are accepted as lost; the hub sees the gap anyway); any
        other alert is raised again if its condition still holds. None: no such open alert."""
        now = self._clock()
        async with self.store.transaction() as tx:
            row = await tx.one("SELECT device, kind FROM alerts WHERE id = ? AND cleared_at IS NULL",
                               (alert_id,))
            if row is None:
                return None
            if row["kind"] == COUNTER_GAP:
                await tx.run("DELETE FROM rating_gaps WHERE device = ?", (row["device"],))
            alert = await self.alerts.clear_by_id(tx, alert_id, now, by)
        if self.s.hub_health:
            self._on_outbox()
        return alert.as_dict() if alert else None

    # ------------------------------------------------------------------ the sweep

    async def run(self) -> None:
        while True:
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bad sweep must not stop the gateway; the next one tries again
                log.exception("registry sweep failed")
            await asyncio.sleep(self.s.registry_sweep_s)

    def _link_state(self, now: float) -> float | None:
        """When the MQTT link came up (this connection), or None while it is down."""
        connected, connects = self._link()
        if not connected:
            self.link_up_since = None
        elif connects != self._link_connects or self.link_up_since is None:
            self.link_up_since = now
        self._link_connects = connects
        return self.link_up_since

    async def sweep(self) -> None:
        now = self._clock()
        link_since = self._link_state(now)
        settled = link_since is not None and now - link_since >= LINK_SETTLE_S
        asks: list[tuple[str, bytes]] = []
        forwarded = self.alerts.forwarded
        outboxed = False
        async with self.store.transaction() as tx:
            await tx.run("INSERT OR IGNORE INTO device_watch (device, created_at) "
                         "SELECT device, ? FROM devices", (now,))
            rows = await tx.all(
                "SELECT d.device, d.window, d.registered_at, d.presence, d.presence_boot, "
                "d.presence_conn, d.presence_at, d.last_seen, d.health, d.health_at, "
                "w.health_period_s, w.timed_out_at, w.info_asked, w.health_fwd_at, w.created_at, "
                "w.offset_ms FROM devices d JOIN device_watch w ON w.device = d.device")
            for r in map(dict, rows):
                if link_since is not None:
                    await self._timeout(tx, r, link_since, now)
                if settled and link_since is not None:
                    await self._offline_alert(tx, r, link_since, now)
                    ask = await self._ask_info(tx, r)
                    if ask is not None:
                        asks.append(ask)
                outboxed = await self._health_snapshot(tx, r, now) or outboxed
            await self._gap_alerts(tx, now)
            await self._reboot_expiry(tx, now)
        for device_topic, payload in asks:  # after COMMIT: never ask twice for one connection
            self._publish(device_topic, payload)
        if outboxed or self.alerts.forwarded != forwarded:
            self._on_outbox()
        self.sweeps += 1

    async def _timeout(self, tx: Tx, r: dict, link_since: float, now: float) -> None:
        if r["presence"] != "online" or r["timed_out_at"] is not None:
            return
        period = r["health_period_s"] or self.s.health_period_s
        limit = self.s.offline_after_periods * period
        heard = max(r["last_seen"] or 0.0, link_since)
        if now - heard <= limit:
            return
        await tx.run("UPDATE device_watch SET timed_out_at = ? WHERE device = ?", (now, r["device"]))
        r["timed_out_at"] = now
        await tx.count("presence.timeout")
        log.warning("device %s silent for %.0f s (%g x %g s health period): offline", r["device"],
                    now - heard, self.s.offline_after_periods, period, extra={"device": r["device"]})

    async def _offline_alert(self, tx: Tx, r: Any, link_since: float, now: float) -> None:
        if r["window"] is None:  # not registered here: not part of the hall (yet)
            return
        p = effective(r["presence"], r["presence_at"], r["timed_out_at"], r["registered_at"])
        if p.state == "online":
            await self.alerts.clear(tx, r["device"], OFFLINE, now)
            return
        since = max(p.since or now, link_since) if p.reason == NEVER_SEEN else (p.since or now)
        if now - since < self.s.alert_offline_after_s:
            return
        if p.reason == BY_STATUS:
            detail = f"offline since {_clock_text(since)} (last will or offline status)"
        elif p.reason == BY_TIMEOUT:
            heard = r["last_seen"]
            detail = (f"nothing heard since {_clock_text(heard) if heard else 'start'} "
                      f"(heartbeat timeout at {_clock_text(since)})")
        else:
            detail = f"registered at window {r['window']} but never connected"
        await self.alerts.raise_(tx, r["device"], OFFLINE, detail, now)

    async def _ask_info(self, tx: Tx, r: Any) -> tuple[str, bytes] | None:
        if r["presence"] != "online":
            return None
        conn = f"{r['presence_boot']}:{r['presence_conn']}"
        if r["info_asked"] == conn:
            return None
        await tx.run("UPDATE device_watch SET info_asked = ? WHERE device = ?", (conn, r["device"]))
        await tx.count("cmd.info")
        cmd_id = f"{INFO_PREFIX}{r['presence_boot']}-{r['presence_conn']}"
        return topic(self.hall, r["device"], "cmd"), encode_cmd(cmd_id, "info")

    async def _health_snapshot(self, tx: Tx, r: Any, now: float) -> bool:
        """One health item per device per `hub_health_interval_s`, when a newer health came."""
        if not self.s.hub_health or r["window"] is None or not r["health"] or r["health_at"] is None:
            return False
        last = r["health_fwd_at"]
        if last is not None and r["health_at"] <= last:
            return False
        if now - (last if last is not None else r["created_at"]) < self.s.hub_health_interval_s:
            return False
        p = effective(r["presence"], r["presence_at"], r["timed_out_at"], r["registered_at"])
        health = json.loads(r["health"])
        item = {"kind": "health", "device": r["device"], "window": r["window"],
                "received_at": wall_iso(r["health_at"]), "presence": p.state,
                "offset_ms": r["offset_ms"], "health": health}
        key = f"health:{self.hall}:{r['device']}:{health['boot']}:{health['up']}"
        await tx.outbox_put("health", key, item, now)
        await tx.run("UPDATE device_watch SET health_fwd_at = ? WHERE device = ?", (now, r["device"]))
        return True

    async def _gap_alerts(self, tx: Tx, now: float) -> None:
        gaps: dict[str, list[tuple[int, int]]] = {}
        due: set[str] = set()
        for g in await tx.all("SELECT device, n_from, n_to, noticed_at FROM rating_gaps "
                              "ORDER BY device, n_from"):
            gaps.setdefault(g["device"], []).append((g["n_from"], g["n_to"]))
            if now - g["noticed_at"] >= self.s.alert_gap_after_s:
                due.add(g["device"])
        for device in sorted(due):
            await self.alerts.raise_(tx, device, COUNTER_GAP, describe_gaps(gaps[device]), now)
        for row in await tx.all("SELECT device FROM alerts WHERE kind = ? AND cleared_at IS NULL",
                                (COUNTER_GAP,)):
            if row["device"] not in gaps:
                await self.alerts.clear(tx, row["device"], COUNTER_GAP, now)

    async def _reboot_expiry(self, tx: Tx, now: float) -> None:
        since = now - self.s.alert_reboots_window_s
        for row in await tx.all("SELECT device FROM alerts WHERE kind = ? AND cleared_at IS NULL",
                                (REBOOTS,)):
            total = await tx.one("SELECT COALESCE(SUM(rise), 0) AS r FROM device_boots "
                                 "WHERE device = ? AND seen_at >= ?", (row["device"], since))
            if total["r"] < self.s.alert_reboots:
                await self.alerts.clear(tx, row["device"], REBOOTS, now)
        await tx.run("DELETE FROM device_boots WHERE seen_at < ?", (since,))

