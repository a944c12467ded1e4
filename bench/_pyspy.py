"""py-spy for the benchmarks: record a process (the hub) while a bench drives it, and tell where
its time went from py-spy's raw output (collapsed stacks): by line, by the innermost function of the
project on the stack, by package or module, by thread.

py-spy is not a dependency of the project: `.venv/bin/pip install py-spy` to use `--profile`.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

PROJECT_PACKAGES = ("hub", "gateway", "hcp")  # profile areas by module for these, by package for the rest
# Leaves where a thread waits though py-spy samples it as running: the anyio pool's idle workers,
# aiosqlite's worker waiting for its next statement (core.py:59 `tx.get()`), the event loop's poll.
IDLE_LEAVES = ("Condition.wait (threading.py)", "EpollSelector.select (selectors.py)",
               "_connection_worker_thread (aiosqlite/core.py:59)")


class Profiler:
    """py-spy record of one process until `stop()`; -> where its samples were."""

    RATE_HZ = 100  # samples per second: enough for a minute-long run, little cost to the hub

    def __init__(self, pid: int, out: Path):
        exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(exe).exists():
            raise RuntimeError("--profile needs py-spy: .venv/bin/pip install py-spy")
        out.parent.mkdir(parents=True, exist_ok=True)
        self.out = out
        with open(out.with_suffix(".log"), "wb") as log:  # py-spy's own messages, never a full pipe
            self.proc = subprocess.Popen([exe, "record", "-p", str(pid), "-o", str(out), "--format",
                                          "raw", "-r", str(self.RATE_HZ), "--threads"],
                                         stdout=log, stderr=subprocess.STDOUT)
        time.sleep(1.0)  # py-spy attaches

    def stop(self) -> dict[str, Any]:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        return summarize_profile(self.out)


def _frame(text: str) -> tuple[str, str, str]:
    """A py-spy frame `func (path:line)` (paths as py-spy shortens them: `hub/ingest.py`,
    `fastapi/routing.py`, `json/decoder.py`) -> (`func (path)`, `func (path:line)`, area): the
    project's module (`hub/store`, `hub/ingest.py`), else the package or stdlib module."""
    func, _, where = text.rpartition(" (")
    where = where.rstrip(")")
    path = where.rsplit(":", 1)[0]
    parts = path.split("/")
    if parts[0] in PROJECT_PACKAGES:
        area = "/".join(parts[:2]) if len(parts) > 1 else path
    else:
        area = parts[0].removesuffix(".py")
    return f"{func} ({path})", f"{func} ({where})", area


def summarize_profile(path: Path, top: int = 15) -> dict[str, Any]:
    """From py-spy's raw output (collapsed stacks): the share of busy samples (a thread waiting
    in one of IDLE_LEAVES is not busy: py-spy counts some waits as running) by leaf line (`own`),
    by the innermost project function on the stack (what the hub's code spends, libraries it calls
    included), by project function anywhere on the stack (`under`), by area of the leaf, by thread."""
    own: Counter = Counter()
    in_project: Counter = Counter()
    under: Counter = Counter()
    areas: Counter = Counter()
    threads: Counter = Counter()
    busy = idle = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        parts = stack.split(";")
        thread = parts[0].rpartition(": ")[2] if parts[0].startswith("thread (") else "?"
        frames = [_frame(p) for p in parts[1:] if " (" in p]
        if not frames:
            continue
        if frames[-1][0] in IDLE_LEAVES or frames[-1][1] in IDLE_LEAVES:
            idle += n
            continue
        busy += n
        threads[thread] += n
        own[frames[-1][1]] += n
        areas[frames[-1][2]] += n
        inner = next((f for f in reversed(frames) if f[2].split("/")[0] in PROJECT_PACKAGES), None)
        in_project[inner[0] if inner else f"(no project frame) {frames[-1][2]}"] += n
        for name in {f[0] for f in frames if f[2].split("/")[0] in PROJECT_PACKAGES}:
            under[name] += n

    def share(counter: Counter) -> list[list[Any]]:
        return [[name, round(100 * n / busy, 1)] for name, n in counter.most_common(top)]

    if not busy:
        return {"file": str(path), "busy_samples": 0, "idle_samples": idle}
    return {"file": str(path), "rate_hz": Profiler.RATE_HZ, "busy_samples": busy, "idle_samples": idle,
            "own_pct": share(own), "innermost_project_function_pct": share(in_project),
            "under_pct": share(under), "own_by_area_pct": share(areas),
            "threads_pct": share(threads)}
