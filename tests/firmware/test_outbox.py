"""The flash journal (firmware/lib/outbox.py) under MicroPython, on a real directory."""

from __future__ import annotations

import json

from tests.fixtures.device import run_micropython
from tests.fixtures.journal import check_journal

from pathlib import Path

HERE = Path(__file__).resolve().parent


def _run(tmp_path: Path, scenario: str, heap: str | None = None, firmware: Path | None = None) -> dict:
    args = [str(tmp_path), scenario]
    return json.loads(run_micropython(HERE / "mp_outbox.py", *args, heapsize=heap,
                                      **({"firmware": firmware} if firmware else {})))


def test_two_flash_writes_per_rating_compaction_included(tmp_path):
    r = _run(tmp_path, "cycle")
    assert r["writes"] == 2 * 300  # one for the rating, one for its ack; compaction rides along
    assert r["size"] < 2 * r["compact_bytes"]  # and compaction did happen
    assert (r["last_n"], r["depth"]) == (300, 0)  # the counter survives compaction
    check_journal(tmp_path / "outbox.log")


def test_a_full_outbox_compacts_in_a_small_heap_and_loses_nothing(tmp_path, mpy_firmware):
    # the firmware heap goal, with the outbox as deployed (.mpy: compiling needs more than running)
    r = _run(tmp_path, "full", heap="48K", firmware=mpy_firmware)
    assert r["depth"] == 200 and r["payloads_ok"] and r["unreadable"] == 0
    assert r["last_n"] == 300 and r["pending_first"] == [2, 4, 6]
    check_journal(tmp_path / "outbox.log")


def test_a_torn_append_is_dropped_and_the_number_reused(tmp_path):
    r = _run(tmp_path, "torn")
    assert r == {"last_n": 3, "pending": [2, 3], "repaired": 1}
    check_journal(tmp_path / "outbox.log")


def test_a_failed_append_loses_no_later_record(tmp_path):
    r = _run(tmp_path, "failed_append")
    assert r["failed"] and r["kept_n"] == 1  # the number of the rating that failed is not used up
    assert r["live_ok"]  # the device reads the ratings after the bad line where they are
    assert r == dict(r, last_n=3, pending=[2, 3], payloads_ok=True, repaired=1)
    check_journal(tmp_path / "outbox.log")
