"""The outbox at capacity, on the real SQLite file through the gateway's own `Store`:

- the depth per state that the status page shows is kept by triggers, and a hypothesis state
  machine over random put / send / dead / fail / prune / reopen steps checks it against a COUNT and
  against a model, with the pending order and what pruning may delete; operator re-queues of dead
  letters (by seq, by reason in chunks) keep the depth and the dead letters per reason right;
- a file of the previous schema version with a backlog gets its counts on migration;
- the reads that run against a backlog of a million rows use an index (query plans);
- retention prunes only `sent` rows older than the keep period, in chunks, and keeps ratings.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import aiosqlite
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from gateway.retention import DAY_S, Retention
from gateway.schema import MIGRATIONS
from gateway.store import OUTBOX_STATES, Store, Tx


def run(coro):
    return asyncio.run(coro)


def counted(path: Path) -> dict[str, int]:
    """Rows per state, counted the slow way by another connection."""
    depth = dict.fromkeys(OUTBOX_STATES, 0)
    with sqlite3.connect(path) as db:
        for state, n in db.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state"):
            depth[state] = n
    return depth


def counted_dead(path: Path) -> dict[str, int]:
    """Dead rows per reason, counted the slow way."""
    with sqlite3.connect(path) as db:
        return dict(db.execute("SELECT last_error, COUNT(*) FROM outbox WHERE state = 'dead' "
                               "GROUP BY last_error"))


class OutboxMachine(RuleBasedStateMachine):
    """Random outbox traffic against a model: seq -> (state, sent_at)."""

    def __init__(self):
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.store: Store | None = None
        self.model: dict[int, tuple[str, float | None]] = {}
        self.reasons: dict[int, str] = {}  # last_error of the rows that went dead
        self.now = 1000.0

    @initialize(tmp=st.just(None))
    def open_store(self, tmp):
        import tempfile
        self.dir = tempfile.mkdtemp(prefix="hcp-outbox-")
        self.path = Path(self.dir) / "gw.sqlite3"
        self.store = self.loop.run_until_complete(Store.open(self.path))

    def teardown(self):
        if self.store is not None:
            self.loop.run_until_complete(self.store.close())
        self.loop.close()
        import shutil
        shutil.rmtree(self.dir, ignore_errors=True)

    def _tx(self, work):
        async def go():
            async with self.store.transaction() as tx:
                return await work(tx)
        return self.loop.run_until_complete(go())

    def _pending(self) -> list[int]:
        return sorted(s for s, (state, _) in self.model.items() if state == "pending")

    @rule(n=st.integers(1, 5), many=st.booleans())
    def put(self, n, many):
        async def work(tx):
            if many:
                await tx.outbox_put_many([("rating", f"rating:D1:{i}", {"i": i}, self.now)
                                          for i in range(n)])
            else:
                for i in range(n):
                    await tx.outbox_put("service", f"service:H1:{i}", {"i": i}, self.now)
            return [r["seq"] for r in await tx.all("SELECT seq FROM outbox ORDER BY seq DESC "
                                                   "LIMIT ?", (n,))]
        for seq in self._tx(work):
            self.model[seq] = ("pending", None)

    @precondition(lambda self: self._pending())
    @rule(data=st.data(), advance=st.floats(0, 3 * DAY_S))
    def send(self, data, advance):
        self.now += advance
        pending = self._pending()
        chosen = data.draw(st.lists(st.sampled_from(pending), min_size=1, unique=True))
        self._tx(lambda tx: tx.outbox_sent(chosen, self.now))
        for seq in chosen:
            self.model[seq] = ("sent", self.now)

    def _dead(self) -> list[int]:
        return sorted(s for s, (state, _) in self.model.items() if state == "dead")

    @precondition(lambda self: self._pending())
    @rule(data=st.data(), reason=st.sampled_from(["unknown_device", "conflict"]))
    def dead(self, data, reason):
        seq = data.draw(st.sampled_from(self._pending()))
        self._tx(lambda tx: tx.outbox_dead(seq, reason, self.now))
        self.model[seq] = ("dead", None)
        self.reasons[seq] = reason

    @precondition(lambda self: self._dead())
    @rule(data=st.data(), by_filter=st.booleans(), chunk=st.integers(1, 3))
    def requeue(self, data, by_filter, chunk):
        """An operator re-sends dead letters: by seq (some not dead), or by reason in chunks."""
        if by_filter:
            reason = data.draw(st.sampled_from(sorted(set(self.reasons.values()))))
            chosen = [s for s in self._dead() if self.reasons[s] == reason]
            total = 0
            while True:
                n = self._tx(lambda tx: tx.outbox_requeue_matching(reason, None, self.now, "op", chunk))
                total += n
                if n < chunk:
                    break
            assert total == len(chosen)
        else:
            chosen = data.draw(st.lists(st.sampled_from(self._dead()), min_size=1, unique=True))
            others = data.draw(st.lists(st.sampled_from(sorted(self.model)), unique=True))
            done = self._tx(lambda tx: tx.outbox_requeue(chosen + others, self.now, "op"))
            assert done == sorted(set(chosen) | {s for s in others if self.model[s][0] == "dead"})
            chosen = done
        for seq in chosen:
            self.model[seq] = ("pending", None)
            del self.reasons[seq]

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def fail(self, data):
        """A failed post touches attempts only; sending a row twice changes nothing either."""
        seqs = data.draw(st.lists(st.sampled_from(sorted(self.model)), min_size=1, unique=True))
        self._tx(lambda tx: tx.outbox_failed(seqs, "ConnectError"))
        for seq in seqs:
            if seq in self.reasons:  # outbox_failed writes last_error whatever the state
                self.reasons[seq] = "ConnectError"
        self._tx(lambda tx: tx.outbox_sent([s for s in seqs if self.model[s][0] != "pending"],
                                           self.now + 1))

    @rule(keep=st.floats(0, 4 * DAY_S), chunk=st.integers(1, 4))
    def prune(self, keep, chunk):
        cutoff = self.now - keep
        ret = Retention(self.store, keep / DAY_S, 3600, clock=lambda: self.now, chunk=chunk)
        pruned = self.loop.run_until_complete(ret.prune_once())
        gone = {s for s, (state, at) in self.model.items() if state == "sent" and at < cutoff}
        assert pruned == len(gone)
        for seq in gone:
            del self.model[seq]

    @rule()
    def reopen(self):
        self.loop.run_until_complete(self.store.close())
        self.store = self.loop.run_until_complete(Store.open(self.path))

    @invariant()
    def depth_matches_the_rows_and_the_model(self):
        if self.store is None:
            return
        async def read():
            async with self.store.read() as tx:
                return (await tx.outbox_depth(), [r["seq"] for r in await tx.outbox_pending(1000)],
                        await tx.outbox_dead_by_reason())
        depth, pending, dead_by_reason = self.loop.run_until_complete(read())
        model = dict.fromkeys(OUTBOX_STATES, 0)
        for state, _ in self.model.values():
            model[state] += 1
        assert depth == model == counted(self.path)
        by_reason: dict[str, int] = {}
        for reason in self.reasons.values():
            by_reason[reason] = by_reason.get(reason, 0) + 1
        assert dead_by_reason == by_reason == counted_dead(self.path)
        assert pending == self._pending()  # every pending row, oldest first
        with sqlite3.connect(self.path) as db:
            assert sorted(r[0] for r in db.execute("SELECT seq FROM outbox")) == sorted(self.model)


TestOutboxMachine = OutboxMachine.TestCase
TestOutboxMachine.settings = settings(max_examples=40, stateful_step_count=25, deadline=None,
                                      suppress_health_check=[HealthCheck.too_slow])


def test_a_previous_version_file_with_a_backlog_gets_its_depth_on_migration(tmp_path):
    path = tmp_path / "gw.sqlite3"
    with sqlite3.connect(path) as db:
        for step, script in enumerate(MIGRATIONS[:2]):
            db.executescript(script)
            db.execute(f"PRAGMA user_version = {step + 1}")
        db.executemany("INSERT INTO outbox (kind, key, item, state, created_at) "
                       "VALUES ('rating', ?, '{}', ?, 1.0)",
                       [(f"rating:D1:{i}", ("pending", "sent", "sent", "dead")[i % 4])
                        for i in range(1, 101)])

    async def depth():
        # read as `hcp gateway status --db` reads a stopped gateway's file, not yet migrated
        db = await aiosqlite.connect(path, isolation_level=None, check_same_thread=False)
        db.row_factory = sqlite3.Row
        unmigrated = await Tx(db).outbox_depth()
        await db.close()
        assert unmigrated == {"pending": 25, "sent": 50, "dead": 25}
        store = await Store.open(path)
        async with store.read() as tx:
            d = await tx.outbox_depth()
        async with store.transaction() as tx:  # and the triggers count from there on
            await tx.outbox_put("rating", "rating:D1:101", {}, 2.0)
            await tx.outbox_sent([4], 3.0)  # seq 4 is pending (4 % 4 == 0)
        async with store.read() as tx:
            d2 = await tx.outbox_depth()
        await store.close()
        return d, d2

    before, after = run(depth())
    assert before == {"pending": 25, "sent": 50, "dead": 25}
    assert after == {"pending": 25, "sent": 51, "dead": 25} == counted(path)


def test_a_v4_file_with_dead_letters_gets_their_reasons_on_migration_and_can_resend_them(tmp_path):
    """Schema v5 counts the dead letters a gateway already holds per reason; rows that died before
    it have no `dead_at` (unknown), and re-queue keeps the trigger-kept counts right from there."""
    path = tmp_path / "gw.sqlite3"
    with sqlite3.connect(path) as db:
        for step, script in enumerate(MIGRATIONS[:4]):
            db.executescript(script)
            db.execute(f"PRAGMA user_version = {step + 1}")
        db.executemany("INSERT INTO outbox (kind, key, item, state, last_error, created_at) "
                       "VALUES ('rating', ?, '{}', ?, ?, 1.0)",
                       [(f"rating:D1:{i}", "dead" if i % 3 else "pending",
                         ("unknown_device" if i % 2 else "conflict") if i % 3 else None)
                        for i in range(1, 31)])

    async def scenario():
        store = await Store.open(path)
        async with store.read() as tx:
            before = await tx.outbox_dead_by_reason()
            newest = await tx.outbox_dead_list(3, reason="conflict")
        async with store.transaction() as tx:
            moved = await tx.outbox_requeue_matching("unknown_device", "rating", 5.0, "op", 1000)
        async with store.read() as tx:
            after, depth = await tx.outbox_dead_by_reason(), await tx.outbox_depth()
        await store.close()
        return before, newest, moved, after, depth

    before, newest, moved, after, depth = run(scenario())
    assert before == {"unknown_device": 10, "conflict": 10}
    assert [r["seq"] for r in newest] == [28, 26, 22] and newest[0]["dead_at"] is None
    assert moved == 10 and after == {"conflict": 10} == counted_dead(path)
    assert depth == {"pending": 20, "sent": 0, "dead": 10} == counted(path)


@pytest.mark.parametrize("sql, index", [
    ("SELECT seq, kind, key, item FROM outbox WHERE state = 'pending' AND seq > 0 "
     "ORDER BY seq LIMIT 500", "outbox_pending"),
    ("DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE state = 'sent' "
     "AND sent_at < 1.0 ORDER BY sent_at LIMIT 5000)", "outbox_sent_at"),
    ("SELECT * FROM outbox WHERE state = 'dead' ORDER BY seq", "outbox_dead"),
    ("SELECT seq FROM outbox WHERE state = 'dead' AND seq < 900 ORDER BY seq DESC LIMIT 100",
     "outbox_dead"),
    ("SELECT seq FROM outbox WHERE state = 'dead' AND last_error = 'unknown_device' "
     "ORDER BY seq DESC LIMIT 100", "outbox_dead_reason"),
    ("UPDATE outbox SET state = 'pending' WHERE seq IN (SELECT seq FROM outbox WHERE "
     "state = 'dead' AND last_error = 'conflict' ORDER BY seq LIMIT 5000)", "outbox_dead_reason"),
    ("SELECT * FROM services WHERE window = '7' AND state = 'open' UNION ALL "
     "SELECT * FROM services WHERE window = '7' AND state = 'ended' AND ended_rx >= 1.0",
     "services_ended"),
])
def test_reads_over_a_large_outbox_use_an_index(tmp_path, sql, index):
    """The forwarder's read, pruning, the dead letters and the local binding never scan a table:
    with a million rows a scan is hundreds of milliseconds under the store's lock."""
    async def plan():
        store = await Store.open(tmp_path / "gw.sqlite3")
        async with store.read() as tx:
            rows = await tx.all("EXPLAIN QUERY PLAN " + sql)
        await store.close()
        return " | ".join(r["detail"] for r in rows)

    detail = run(plan())
    assert index in detail, detail
    # "SCAN outbox USING INDEX outbox_pending" walks that index in order; a bare "SCAN outbox" is
    # the whole table
    assert not {"SCAN outbox", "SCAN services"} & set(detail.split(" | ")), detail


def test_retention_prunes_old_sent_rows_in_chunks_and_keeps_the_rest(tmp_path):
    now = 100 * DAY_S

    async def scenario():
        store = await Store.open(tmp_path / "gw.sqlite3")
        async with store.transaction() as tx:
            await tx.outbox_put_many([("rating", f"rating:D1:{i}", {"i": i}, now - 10 * DAY_S)
                                      for i in range(1, 41)])
            await tx.insert_rating("D1", 1, "{}", None, 4, now, 0, None, "no_service_in_progress")
            await tx.outbox_sent(list(range(1, 11)), now - 8 * DAY_S)  # old enough
            await tx.outbox_sent(list(range(11, 21)), now - 6 * DAY_S)  # kept: 6 < 7 days
            for seq in range(21, 26):
                await tx.outbox_dead(seq, "bad_signature")  # dead letters stay however old
        ret = Retention(store, keep_days=7, interval_s=3600, clock=lambda: now, chunk=3)
        pruned = await ret.prune_once()
        async with store.read() as tx:
            left = [r["seq"] for r in await tx.all("SELECT seq FROM outbox ORDER BY seq")]
            depth = await tx.outbox_depth()
            counters = await tx.counters()
            ratings = await tx.all("SELECT device, n FROM ratings")
        await store.close()
        return pruned, left, depth, counters, ratings, ret.state

    pruned, left, depth, counters, ratings, state = run(scenario())
    assert pruned == 10 and left == list(range(11, 41))
    assert depth == {"pending": 15, "sent": 10, "dead": 5}
    assert counters["outbox.pruned"] == 10
    assert state.last_pruned == 10 and state.pruned_total == 10 and state.last_error is None
    assert [tuple(r) for r in ratings] == [("D1", 1)]  # the dedup record stays


def test_a_backlog_drains_batch_after_batch_in_seq_order_with_nothing_posted_twice(
        broker, gateway_factory, device_peers, mini_hub):
    """The forwarder writes one answer while the hub works on the next batch: the posts must still
    go one after another, oldest first, each item once."""
    gw = gateway_factory(broker, hub_url=mini_hub.url, hub_token=mini_hub.token,
                         devices=[{"device": "D07", "window": "7"}], forward_batch=7)
    dev = device_peers(broker, "D07")
    mini_hub.down = True
    for n in range(1, 51):
        dev.rate(n)
    dev.wait_ack(50)
    gw.wait_status(lambda st: st["outbox"]["pending"] == 50 and st["hub"]["failures"] >= 1)
    mini_hub.down = False
    st = gw.wait_status(lambda st: st["outbox"] == {"pending": 0, "sent": 50, "dead": 0},
                        timeout=20)
    posted = [[i["rating"]["n"] for i in env["items"]] for env in mini_hub.posts]
    assert [n for batch in posted for n in batch] == list(range(1, 51))
    assert all(len(batch) <= 7 for batch in posted) and len(posted) >= 8
    assert st["counters"]["forward.accepted"] == 50 and "forward.duplicate" not in st["counters"]
