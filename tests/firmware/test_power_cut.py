"""Power cuts at random moments around a press, on the real firmware over a real Mosquitto.

Each run is one power-up of the device on the same flash directory: the test (playing the gateway,
acking every rating it receives) opens a session, taps a score, and cuts the power (SIGKILL of the
interpreter) after a seeded random delay: before the press, around the flash write and "thank you",
between publish and ack, while the ack is appended or the journal compacted, during boot, or while
the device writes a configuration change the gateway sent. Between the cuts, a few citizens rate
undisturbed, so the journal grows to the size where the firmware compacts it. After
every cut it checks what is on flash and what the gateway saw; at the end it powers up once more,
lets everything drain, and checks that nothing that reached "thank you" was lost or doubled.

Invariants: a rating that reached "thank you" (its `rating` event was seen) is on flash at every
later look, reaches the gateway with the payload pressed, and is acked; once its ack is on flash it
is never sent again; each id has one payload only; the ids are 1..N with no gap; `config.json` and
`boot.json` always parse; every journal line but a torn last one has a valid CRC, and after the
device's own repair at boot none is torn.

A SIGKILL cannot tear a write(2), so a torn journal record (a power cut in the middle of a flash
write) is also emulated, only where physically consistent with what was seen: the record written
last is cut short when nothing the firmware does after that write (its `rating`/`ack` event, the
publish) happened; or a prefix of the record the firmware was about to write (the rating of the
press, the ack of a rating the gateway acked) is appended. A torn rating's id was never used, so
the next rating takes it again; the gateway must never have seen it.

Repeat a run with HCP_POWER_CUT_SEED=<seed>; HCP_POWER_CUT_RUNS sets the number of runs.
"""

from __future__ import annotations

import json
import os
import random
import signal
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hcp import protocol as P
from simulator.device_process import DeviceProcess, Event
from tests.fixtures.device import device_key
from tests.fixtures.gateway_peer import GatewayPeer
from tests.fixtures.flash_journal import Journal, crc, read_journal
from tests.fixtures.journal import parse_line

SEED = int(os.environ.get("HCP_POWER_CUT_SEED", "20261121"))
RUNS = int(os.environ.get("HCP_POWER_CUT_RUNS", "220"))
DEV = "D07"
TEAR_P = 0.5  # share of eligible cuts that also tear a journal record, in the tearing stretches
# (but one before the press's rating was written always tears that rating: _emulate)
TEAR_EVERY = (110, 75)  # of every 110 runs, the first 75 tear nothing: a torn journal is rewritten
# at boot, so without clean stretches it would never grow to the size where the firmware compacts it
STALE_TMP_P = 0.1  # share of cuts that leave a half-written outbox.log.tmp (a cut mid-compaction)
PRESS_S = 0.056  # first guess of tap -> `rating` event (50 ms debounce + up to 10 ms poll)
TAP_MS = 100  # a hold shorter than ~65 ms can be missed: 50 ms debounce counted from a 10 ms poll
REPAIRED = "outbox journal repaired after a torn write"


@dataclass
class Lifetime:
    """One power-up: what the flash held before it, and what the device showed until the cut."""

    before: Journal
    boot_before: int
    events: list[Event] = field(default_factory=list)

    def named(self, name: str) -> list[dict]:
        return [e.data for e in self.events if e.name == name]

    @property
    def boot(self) -> int | None:
        boots = self.named("boot")
        return boots[0]["boot"] if boots else None


def _boot_count(flash: Path) -> int:
    path = flash / "boot.json"
    if not path.exists():
        return 0
    obj = json.loads(path.read_text())  # never corrupt: written by temp file + rename
    assert isinstance(obj, dict) and isinstance(obj.get("boot"), int), f"boot.json: {obj!r}"
    return obj["boot"]


class PowerCuts:
    def __init__(self, dev: DeviceProcess, peer: GatewayPeer, rng: random.Random):
        self.dev = dev
        self.peer = peer
        self.rng = rng
        self.flash = dev.flash_dir
        self.config = json.loads((self.flash / "config.json").read_text())
        self.kid = P.key_id(device_key(DEV))
        self.thanked: dict[int, tuple[int, str | None]] = {}  # n -> (score, sess) once "thank you" was seen
        self.status: dict[int, str] = {}  # n -> "pending" / "done" in the last look at the flash
        self.stored: dict[int, bytes] = {}  # n -> payload on flash while pending
        self.receipts_seen = 0  # gateway receipts already attributed to a power-up
        self.run_no = 0
        self.tapped: dict[int, float] = {}  # button -> when it was last tapped
        self.planted_tmp: bytes | None = None
        self.config_change: tuple[str, dict] | None = None  # (command id, config it sets)
        self.config_changes: Counter[str] = Counter()
        self.phases: Counter[str] = Counter()
        self.modes: Counter[str] = Counter()
        self.press_s: list[float] = []
        self.torn = Counter()
        self.compactions = 0
        self.compaction_cuts: Counter[str] = Counter()

    # -- one power-up
    def power_up(self) -> Lifetime:
        life = Lifetime(read_journal(self.flash / "outbox.log"), _boot_count(self.flash))
        self.dev.start()
        return life

    def check_boot(self, life: Lifetime) -> None:
        """The device's own view at boot matches what the flash held, and its repair is clean."""
        boot = self.dev.wait_event("boot", timeout=10).data
        before = life.before
        assert boot == {"boot": life.boot_before + 1, "n": before.last_n,
                        "pending": len(before.pending), "kid": self.kid}, (boot, before.last_n)
        repaired = [e for e in self.dev.events_named("error") if e.data["text"] == REPAIRED]
        assert bool(repaired) == (before.torn is not None), f"repair reported: {repaired}"
        if before.torn is not None:
            after = self._read_settled()
            assert after.torn is None and not after.problems, (after.torn, after.problems)
            assert (after.header, after.last_n) == (before.last_n, before.last_n)
            assert set(after.pending) <= set(before.pending)  # acks may already have come

    def _read_settled(self) -> Journal:
        j = read_journal(self.flash / "outbox.log")
        if j.torn is not None:  # an append racing this read: look again
            time.sleep(0.05)
            j = read_journal(self.flash / "outbox.log")
        return j

    def cut(self, life: Lifetime) -> None:
        """SIGKILL now; then collect every line the device wrote before it died."""
        proc = self.dev.proc
        assert proc is not None
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        self.dev.wait_for(lambda: not self.dev.connected, 5, "the control connection to close")
        life.events = list(self.dev.events)  # its reader thread has read to the end and stopped
        self.dev.kill()

    def _wait_will(self, life: Lifetime) -> None:
        """Mosquitto publishes the last will after reading everything the dead device sent; once
        the gateway has it, every rating this power-up published has reached the gateway."""
        boot = _boot_count(self.flash)
        births = [s.conn for s in self.peer.statuses(DEV) if s.state == "online" and s.boot == boot]
        conns = births + [d["conn"] for d in life.named("online")]
        if boot != life.boot_before + 1 or not conns:
            return  # cut before it ever came online: it published nothing
        conn = max(conns)
        self.peer.wait_for(lambda: any(s.state == "offline" and (s.boot, s.conn) == (boot, conn)
                                       for s in self.peer.status), 10, f"the will of {boot}/{conn}")

    # -- the configuration, changed over MQTT while the power may go
    def _check_config(self) -> None:
        """config.json always parses; it holds the old or the new value of a change that was in
        progress, and the new one once the device confirmed it."""
        on_flash = json.loads((self.flash / "config.json").read_text())
        assert isinstance(on_flash, dict)
        cfg = {k: on_flash.get(k) for k in self.config}  # the device writes every key once it changes one
        if self.config_change is not None:
            cid, new = self.config_change
            confirmed = any(d == DEV and r.get("id") == cid and r.get("ok")
                            for d, r in list(self.peer.replies))
            assert cfg in (self.config, new) and (cfg == new or not confirmed), (cfg, confirmed)
            self.config_changes["confirmed" if confirmed else "new" if cfg == new else "old"] += 1
            self.config, self.config_change = cfg, None
        assert cfg == self.config, f"config.json changed: {on_flash}"

    def change_config(self) -> None:
        """The gateway sets `thanks_ms` (the device writes config.json: temp file and rename);
        the power goes within the next few milliseconds."""
        cid = f"c{len(self.config_changes)}-{self.run_no}"
        new = dict(self.config, thanks_ms=1100 - int(self.config.get("thanks_ms") or 500))  # 500 <-> 600
        self.config_change = (cid, new)
        self.peer.publish(P.topic("H1", DEV, "cmd"),
                          P.encode_cmd(cid, "config", {"set": {"thanks_ms": new["thanks_ms"]}}))
        end = time.perf_counter() + self.rng.uniform(0, 0.002)
        while time.perf_counter() < end:
            pass

    # -- after a cut
    def after_cut(self, life: Lifetime, new_n: int | None, due: bool = False,
                  label: str = "during boot") -> None:
        self._wait_will(life)
        self._check_config()
        boot = _boot_count(self.flash)
        assert boot in (life.boot_before, life.boot_before + 1), (boot, life.boot_before)
        if life.boot is not None:
            assert boot == life.boot
        j = read_journal(self.flash / "outbox.log")
        assert not j.problems, j.problems
        if j.torn is not None and j.torn != life.before.torn:
            self.torn["by the cut"] += 1  # allowed: a cut in the middle of an append
        before = life.before
        receipts = self.peer.receipts_from(self.receipts_seen)
        self.receipts_seen += len(receipts)
        assert not self.peer.conflicts, f"one id, two payloads: {self.peer.conflicts[:2]}"
        assert not self.peer.rejected, f"the gateway rejected: {self.peer.rejected[:2]}"

        # What this power-up sent can only be what it found pending or created itself: an acked
        # rating is never sent again.
        may_send = set(before.pending) | {n for n in range(before.last_n + 1, j.last_n + 1)}
        sent = {r.n for r in receipts} | {d["n"] for d in life.named("published")}
        assert sent <= may_send, f"sent {sorted(sent - may_send)}, not pending at boot ({before.last_n})"

        for d in life.named("rating"):
            n = d["n"]
            assert n not in self.thanked, f"id {n} thanked twice: {self.thanked[n]} and {d}"
            assert j.status(n) != "unknown", f"rating {n} reached thank-you but is not on flash"
            self.thanked[n] = (d["score"], d["sess"])
        for d in life.named("ack"):
            assert j.status(d["n"]) == "done", f"ack of {d['n']} seen, but it is still {j.status(d['n'])}"
        for n, old in self.status.items():
            now = j.status(n)
            assert now != "unknown", f"rating {n} ({old}) vanished from flash"
            assert not (old == "done" and now == "pending"), f"rating {n} came back after its ack"
        for n, payload in j.pending.items():
            r = P.decode_rating(payload, "H1", DEV)
            assert r.n == n and r.verify(device_key(DEV)), f"stored rating {n} is not valid"
            if n in self.stored:
                assert payload == self.stored[n], f"stored rating {n} changed"
            if n in self.thanked:
                assert (r.score, r.sess) == self.thanked[n], f"rating {n} is not what was pressed"
            got = self.peer.payload(DEV, n)
            assert got is None or got == payload, f"rating {n}: gateway and flash differ"

        self._classify(life, j, new_n, due, label)
        j = self._emulate(life, j, new_n, self.run_no % TEAR_EVERY[0] >= TEAR_EVERY[1])
        self.status = {n: j.status(n) for n in range(1, j.last_n + 1)}
        self.stored = dict(j.pending)

    def _classify(self, life: Lifetime, j: Journal, new_n: int | None, due: bool,
                  label: str) -> None:
        tmp = self.flash / "outbox.log.tmp"
        if tmp.exists() and tmp.read_bytes() != self.planted_tmp:
            self.compaction_cuts["in the rewrite"] += 1  # the temp file was being written
            self.planted_tmp = tmp.read_bytes()
        elif due and j.compaction_due:
            self.compaction_cuts["before the rewrite"] += 1
        if j.size < life.before.size:
            self.compactions += 1
        if new_n is None:
            self.phases[label] += 1
            return
        if j.status(new_n) == "unknown":
            phase = "before the rating was written"
        elif new_n not in {d["n"] for d in life.named("rating")}:
            phase = "rating written, before thank-you"
        elif self.peer.payload(DEV, new_n) is None:
            phase = "thank-you, before the gateway had it"
        elif j.status(new_n) == "pending":
            phase = "gateway had it, before the ack was written"
        elif new_n not in {d["n"] for d in life.named("ack")}:
            phase = "ack written, before the ack event"
        else:
            phase = "after the ack"
        self.phases[phase] += 1

    def _emulate(self, life: Lifetime, j: Journal, new_n: int | None, tearing: bool) -> Journal:
        """Sometimes leave the flash as a cut in the middle of a write would have: a half-written
        compaction temp file, or a torn last record. A record is torn only where that is physically
        consistent with what was seen: the record written last, when nothing the firmware does
        after writing it (its event, its publish) was seen; or a prefix of the record the firmware
        was about to write (the rating of this run's press, not stored yet; the ack of a rating
        the gateway has acked)."""
        if self.rng.random() < STALE_TMP_P and j.raw:
            self.planted_tmp = j.raw[: self.rng.randrange(len(j.raw))]
            (self.flash / "outbox.log.tmp").write_bytes(self.planted_tmp)
        if j.torn is not None or not tearing:
            return j
        # A cut before this press's rating was written always tears that rating's append here:
        # such cuts are few (37 of 220 runs in one run of the test), and left to the coin and the
        # choice below, the test's claim of at least 3 torn ratings failed on a busy machine (2),
        # where the cuts land shifts with the load.
        half_r = new_n is not None and j.status(new_n) == "unknown" and new_n == j.last_n + 1
        if half_r:
            return self._tear(j, "half R", new_n)
        if self.rng.random() >= TEAR_P:
            return j
        options: list[tuple[str, int]] = []
        if j.lines:
            rec = parse_line(j.lines[-1])
            assert rec is not None
            kind, n, _ = rec
            if kind == "R" and (n > life.before.last_n and n not in {d["n"] for d in life.named("rating")}
                                and self.peer.payload(DEV, n) is None):
                options.append(("cut R", n))
            if kind == "A" and (life.before.status(n) == "pending"
                                and n not in {d["n"] for d in life.named("ack")}):
                options.append(("cut A", n))
        acked = {n for (d, n, _st) in self.peer.acks_sent if d == DEV}
        if j.pending and set(j.pending) & acked:
            options.append(("half A", self.rng.choice(sorted(set(j.pending) & acked))))
        if not options:
            return j
        how, n = self.rng.choice(options)
        return self._tear(j, how, n)

    def _tear(self, j: Journal, how: str, n: int) -> Journal:
        """Write `outbox.log` as a cut in the middle of a write leaves it: `cut R`/`cut A` the last
        record cut short, `half R`/`half A` a prefix of rating or ack `n` appended."""
        path = self.flash / "outbox.log"
        if how.startswith("cut"):
            last = j.lines[-1]
            data = j.raw[: len(j.raw) - len(last) + self.rng.randrange(1, len(last))]
        else:
            if how == "half R":
                r = P.sign_rating(device_key(DEV), "H1", DEV, n, _boot_count(self.flash),
                                  self.rng.randrange(10**6), "torn", self.rng.randint(1, 5))
                payload = json.dumps(r.payload(), separators=(",", ":"))
                line = f"R {n} {crc(f'R {n} {payload}')} {payload}\n".encode()
            else:
                line = f"A {n} {crc(f'A {n}')}\n".encode()
            assert parse_line(line) is not None
            data = j.raw + line[: self.rng.randrange(1, len(line))]
        path.write_bytes(data)
        self.torn[how] += 1
        torn = read_journal(path)
        assert torn.torn is not None and not torn.problems
        return torn

    # -- the runs
    def run(self, i: int) -> None:
        rng = self.rng
        self.run_no = i
        life = self.power_up()
        before = life.before
        mode = rng.choices(("boot", "press", "ack", "idle", "config"), (8, 56, 20, 8, 8))[0]
        if mode == "boot":
            self.modes[mode] += 1
            time.sleep(rng.uniform(0, 0.012))
            self.cut(life)
            self.after_cut(life, None)
            return
        self.check_boot(life)
        self.dev.wait_event("online", timeout=10)
        if mode == "config":
            self.modes[mode] += 1
            self.change_config()
            self.cut(life)
            self.after_cut(life, None, label="while changing config")
            return
        # A few citizens rate undisturbed first (so the journal grows to where it is compacted).
        # Once the journal is due for compaction, its next write rewrites it: keep that for the cut.
        extra = 0
        for _ in range(rng.choice((0, 1, 2, 3))):
            if read_journal(self.flash / "outbox.log").compaction_due:
                break
            n = before.last_n + 1 + extra
            self.rate(n, f"run{i:05d}w{extra}", rng.randint(1, 5))
            self.dev.wait_event("ack", lambda d, n=n: d["n"] == n, timeout=10)
            extra += 1
        new_n = before.last_n + 1 + extra
        sess = f"run{i:05d}"
        score = rng.randint(1, 5)
        self.peer.prompt(DEV, P.encode_prompt_open(sess.ljust(40, "x"), 60))
        self.dev.wait_state("prompt")
        est = statistics.median(self.press_s[-30:]) if self.press_s else PRESS_S
        # The journal is rewritten, instead of an ack being appended, when it is big and mostly
        # acked: then cut around that write (this rating's ack).
        due = read_journal(self.flash / "outbox.log").compaction_due
        if due:
            self.compaction_cuts["runs with a compaction due"] += 1
            if rng.random() < 0.85:
                mode = "ack"
        self.modes[mode] += 1
        since = len(self.peer.receipts)
        t0, t0_mono = self._tap(score)
        if mode == "press":
            if rng.random() < 0.25:
                delay = rng.uniform(0, est - 0.008)  # before the press registers
            else:
                delay = rng.uniform(est - 0.004, est + 0.006)  # write, thank-you, publish, ack
            while time.perf_counter() - t0 < delay:
                pass
        elif mode == "ack":
            self.peer.wait_rating(DEV, new_n, timeout=10, after=since)  # its ack is on the way
            # a rewrite takes longer than an append: cut in a wider window when one is due
            end = time.perf_counter() + rng.uniform(0, 0.006 if due else 0.0025)
            while time.perf_counter() < end:
                pass
        else:
            self.dev.wait_event("ack", lambda d: d["n"] == new_n, timeout=10)
            time.sleep(rng.uniform(0, 0.003))
        self.cut(life)
        for e in life.events:
            if e.name == "rating" and e.data["n"] == new_n:
                assert (e.data["score"], e.data["sess"]) == (score, sess.ljust(40, "x"))
        self.after_cut(life, new_n, due)
        thanks = [e.at for e in life.events if e.name == "rating" and e.data["n"] == new_n]
        if thanks:
            self.press_s.append(thanks[0] - t0_mono)

    def _tap(self, score: int) -> tuple[float, float]:
        """Tap; -> (time.perf_counter(), time.monotonic()) when the tap was sent. The firmware
        debounces 50 ms: a second tap of one button before the first one's release has settled
        would be no press at all, so wait for that (a hand takes longer anyway)."""
        wait = self.tapped.get(score, 0.0) + (TAP_MS + 80) / 1000 - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        sent = time.perf_counter(), time.monotonic()
        self.dev.tap(score, TAP_MS)
        self.tapped[score] = sent[1]
        return sent

    def rate(self, n: int, sess: str, score: int) -> None:
        """One undisturbed rating: open a session (40-character id: big records, so the journal
        fills), tap, see "thank you"."""
        self.peer.prompt(DEV, P.encode_prompt_open(sess.ljust(40, "x"), 60))
        self.dev.wait_state("prompt")
        self._tap(score)
        ev = self.dev.wait_event("rating", lambda d: d["n"] == n, timeout=10)
        assert (ev.data["score"], ev.data["sess"]) == (score, sess.ljust(40, "x"))

    def finish(self) -> None:
        """Power up once more and let everything drain: nothing lost, nothing doubled."""
        life = self.power_up()
        self.check_boot(life)
        pending = set(life.before.pending)
        self.dev.wait_for(lambda: pending <= {e.data["n"] for e in self.dev.events_named("ack")},
                          30, f"acks of {sorted(pending)}")
        j = read_journal(self.flash / "outbox.log")
        assert not j.problems and j.torn is None and not j.pending, (j.problems, sorted(j.pending))
        last = j.last_n
        received = self.peer.received(DEV)
        assert received == set(range(1, last + 1)), (
            f"ids the gateway got are not 1..{last}: missing {sorted(set(range(1, last + 1)) - received)}, "
            f"extra {sorted(received - set(range(1, last + 1)))}")
        assert set(self.thanked) <= received
        for n, (score, sess) in self.thanked.items():
            r = self.peer.rating(DEV, n)
            assert (r.score, r.sess) == (score, sess), f"rating {n}: {r} is not what was pressed"
        acked = {n for (d, n, _st) in self.peer.acks_sent if d == DEV}
        assert acked == received
        assert not self.peer.conflicts and not self.peer.rejected
        self.cut(life)


@pytest.mark.slow
def test_power_cut_at_random_moments_never_loses_or_doubles_a_rating(broker, device_factory):
    rng = random.Random(SEED)
    print(f"power-cut seed {SEED} (repeat with HCP_POWER_CUT_SEED={SEED}), {RUNS} runs")
    peer = GatewayPeer(broker.port, key_of=device_key)
    dev = device_factory(DEV, broker=broker, start=False, thanks_ms=500, health_s=3600)
    cuts = PowerCuts(dev, peer, rng)
    started = time.monotonic()
    run = -1
    try:
        for run in range(RUNS):
            cuts.run(run)
        cuts.finish()
    except BaseException as exc:
        exc.add_note(f"power-cut test: seed {SEED}, run {run} (HCP_POWER_CUT_SEED={SEED} repeats it)")
        raise
    finally:
        peer.close()
    elapsed = time.monotonic() - started
    print(f"{RUNS} power cuts in {elapsed:.1f} s; modes {dict(cuts.modes)}")
    print(f"cut {dict(cuts.phases)}")
    print(f"ratings {len(cuts.thanked)} thanked, last id {max(cuts.thanked, default=0)}; torn "
          f"{dict(cuts.torn)}; compactions {cuts.compactions}; cuts while a compaction was due "
          f"{dict(cuts.compaction_cuts)}; config changes cut {dict(cuts.config_changes)}")
    if RUNS < 200:
        return  # a short run (HCP_POWER_CUT_RUNS) is for debugging: no coverage claims
    # The cuts must have landed where the test claims, or it proves little.
    assert cuts.phases["before the rating was written"] >= 10
    assert cuts.phases["gateway had it, before the ack was written"] + \
        cuts.phases["thank-you, before the gateway had it"] >= 5
    assert cuts.phases["after the ack"] >= 10
    assert cuts.torn["half R"] >= 3  # torn rating appends: their ids were taken again
    assert cuts.compactions >= 10  # at boot after a tear, and when the journal grew big
    assert cuts.compaction_cuts["runs with a compaction due"] >= 3
    assert cuts.compaction_cuts["before the rewrite"] + cuts.compaction_cuts["in the rewrite"] >= 1
    assert cuts.config_changes["old"] + cuts.config_changes["new"] >= 2  # cut before it confirmed
