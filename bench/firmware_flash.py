"""Flash writes and bytes written per rating by the real firmware's outbox journal.

The real firmware (MicroPython unix port, host board: its flash is a directory) makes N ratings
against a private Mosquitto; a CPython peer plays the gateway. Every rating is an R record appended
to `outbox.log` (which also persists the counter) and, once the gateway's ack arrives, an A record;
when acked records fill more than half of a journal over 8 KB, the journal is rewritten (temp file +
rename) with only what is still pending. `boot.json` is rewritten once per boot, not per rating.

Two workloads, on one device:
  * steady:  N ratings (full 1000, --quick 200), each acked before the next press (a healthy hall);
  * backlog: N/2 ratings in batches of 50, each batch acked only after all 50 are stored (a gateway
    that is down or behind), so compaction rewrites pending ratings too.
Then one reboot, for the per-boot cost (boot.json write, reading the journal back).

Measured from the outside, two ways side by side:
  * `model` (always): the runner drives acks itself and stats the flash files after every rating and
    every ack (no other flash write can happen in between); an inode change of `outbox.log` is a
    rewrite (its new size is what was written), a size increase an append. Counts *file commits*
    (one append or one rewrite = one open-write-close), which is what costs a flash program/erase
    cycle on littlefs.
  * `strace` (if `strace` is installed and allowed; `--no-strace` skips it): the interpreter runs
    under `strace -f -y -ttt`, and every write/read/open/rename/close syscall on a flash file is
    counted, split into phases by timestamp. Also shows how the firmware reads the journal back
    (MicroPython's readline on a file is unbuffered: one read() per byte).
`ratio` = strace bytes written / model bytes written for the steady phase (1.0: the two agree).

Usage: .venv/bin/python bench/firmware_flash.py [--quick] [--ratings N] [--no-strace] [--seed S]
Prints progress on stderr and ends with one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import stat
import tempfile
import time
from pathlib import Path

import socket

from _harness import Rig, Tapper, emit, env_info, find_micropython, log, press_until, wait_online

BATCH = 50  # backlog: ratings held unacked per batch
STRACE_CALLS = ("openat", "open", "creat", "write", "writev", "pwrite64", "read", "readv", "pread64",
                "close", "rename", "renameat", "renameat2", "unlink", "unlinkat", "fsync",
                "fdatasync", "ftruncate")


# ------------------------------------------------------------------------- the model (stat-based)
class FileWatch:
    """Attributes every change of the flash files to one file commit, by stat-ing after each step."""

    def __init__(self, flash: Path, names=("outbox.log", "boot.json", "config.json")):
        self.flash = flash
        self.names = names
        self.last = {n: self._stat(n) for n in names}

    def _stat(self, name: str):
        try:
            st = os.stat(self.flash / name)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_size)

    def step(self) -> dict:
        """-> {name: {"appends", "rewrites", "bytes"}} for what changed since the last step."""
        out = {}
        for name in self.names:
            now, before = self._stat(name), self.last[name]
            if now == before:
                continue
            if now is None:
                out[name] = {"appends": 0, "rewrites": 0, "bytes": 0, "removed": 1}
            elif before is None and name == "outbox.log":
                out[name] = {"appends": 1, "rewrites": 0, "bytes": now[1]}  # created by the first append
            elif before is None or now[0] != before[0]:
                out[name] = {"appends": 0, "rewrites": 1, "bytes": now[1]}  # temp file + rename
            elif now[1] > before[1]:
                out[name] = {"appends": 1, "rewrites": 0, "bytes": now[1] - before[1]}
            else:
                out[name] = {"appends": 0, "rewrites": 1, "bytes": now[1]}  # truncated in place
            self.last[name] = now
        return out


class Tally:
    def __init__(self):
        self.appends = self.rewrites = self.bytes = 0
        self.steps_with_two = 0  # a step that changed the file more than once would hide a commit

    def add(self, change: dict, name: str = "outbox.log") -> None:
        c = change.get(name)
        if c:
            self.appends += c["appends"]
            self.rewrites += c["rewrites"]
            self.bytes += c["bytes"]

    def per(self, n: int) -> dict:
        return {"file_commits": self.appends + self.rewrites, "appends": self.appends,
                "rewrites": self.rewrites, "bytes": self.bytes,
                "commits_per_rating": round((self.appends + self.rewrites) / n, 4),
                "bytes_per_rating": round(self.bytes / n, 1)}


# ----------------------------------------------------------------------------------- strace
_LINE = re.compile(r"^(\d+)\s+(\d+\.\d+)\s+(.*)$")
_RESUMED = re.compile(r"^<\.\.\. (\w+) resumed>(.*)$")
_FD_PATH = re.compile(r"^\d+<([^>]*)>")


def strace_wrapper(workdir: Path, log_env: str) -> Path | None:
    """A directory holding a `micropython` that runs the real one under strace (first on PATH, so
    DeviceProcess picks it up), or None when strace is missing or cannot trace here."""
    strace = shutil.which("strace")
    if not strace:
        return None
    real = find_micropython()
    probe = os.system(f"{strace} -f -qq -o /dev/null -- {real} -c 'pass' >/dev/null 2>&1")
    if probe != 0:
        return None
    seccomp = os.system(f"{strace} -f --seccomp-bpf -qq -e trace=write -o /dev/null true >/dev/null 2>&1") == 0
    bindir = workdir / "strace-bin"
    bindir.mkdir(parents=True, exist_ok=True)
    script = bindir / "micropython"
    script.write_text("#!/bin/sh\n"
                      f'exec {strace} -f -qq -y -ttt -s 16 {"--seccomp-bpf " if seccomp else ""}-e trace={",".join(STRACE_CALLS)} '
                      f'-o "${log_env}" -- {real} "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return bindir


def parse_strace(path: Path, flash: Path) -> list[tuple[float, str, str, int, str]]:
    """-> [(time, syscall, file name in the flash dir, return value, flags)] for flash files only."""
    root = str(flash) + "/"
    out = []
    pending: dict[str, str] = {}
    for raw in path.read_text(errors="replace").splitlines():
        m = _LINE.match(raw)
        if not m:
            continue
        pid, t, rest = m.group(1), float(m.group(2)), m.group(3)
        if rest.endswith("<unfinished ...>"):
            pending[pid] = rest[: -len("<unfinished ...>")]
            continue
        r = _RESUMED.match(rest)
        if r:
            rest = pending.pop(pid, r.group(1) + "(") + r.group(2)
        if "(" not in rest or " = " not in rest:
            continue
        name, args = rest.split("(", 1)
        if name not in STRACE_CALLS:
            continue
        ret_text = rest.rsplit(" = ", 1)[1]
        ret_m = re.match(r"-?\d+", ret_text)
        ret = int(ret_m.group(0)) if ret_m else -1
        if name in ("openat", "open", "creat"):
            pm = re.search(r'"([^"]*)"', args)
            target = pm.group(1) if pm else ""
            flags = args.split(", ")[2] if name == "openat" and args.count(", ") >= 2 else ""
        elif name.startswith("rename") or name.startswith("unlink"):
            paths = re.findall(r'"([^"]*)"', args)
            target = paths[-1] if paths else ""
            flags = " -> ".join(paths)
        else:
            fm = _FD_PATH.match(args)
            target = fm.group(1) if fm else ""
            flags = ""
        if not target.startswith(root):
            continue
        out.append((t, name, target[len(root):], ret, flags))
    return out


def strace_figures(calls, t0: float, t1: float, n: int) -> dict:
    """Syscall counts on flash files between t0 and t1 (wall time), per rating."""
    w = [c for c in calls if t0 <= c[0] < t1]

    def count(pred) -> int:
        return sum(1 for c in w if pred(c))

    def total(pred) -> int:
        return sum(c[3] for c in w if pred(c) and c[3] > 0)

    ob = lambda c: c[2].startswith("outbox.log")  # noqa: E731  # outbox.log and outbox.log.tmp
    writes = count(lambda c: ob(c) and c[1] in ("write", "writev", "pwrite64"))
    wbytes = total(lambda c: ob(c) and c[1] in ("write", "writev", "pwrite64"))
    opens_w = count(lambda c: ob(c) and c[1] in ("openat", "open", "creat") and c[3] >= 0
                    and ("O_WRONLY" in c[4] or "O_RDWR" in c[4]))
    opens_r = count(lambda c: ob(c) and c[1] in ("openat", "open") and c[3] >= 0 and "O_RDONLY" in c[4])
    reads = count(lambda c: ob(c) and c[1] in ("read", "readv", "pread64"))
    rbytes = total(lambda c: ob(c) and c[1] in ("read", "readv", "pread64"))
    renames = count(lambda c: c[1].startswith("rename") and "outbox.log" in c[4])
    syncs = count(lambda c: ob(c) and c[1] in ("fsync", "fdatasync"))
    other = sorted({c[2] for c in w if not ob(c) and c[1] in ("write", "writev", "pwrite64")})
    return {
        "write_syscalls": writes, "bytes_written": wbytes, "opens_for_write": opens_w,
        "renames": renames, "fsyncs": syncs, "opens_for_read": opens_r, "read_syscalls": reads,
        "bytes_read": rbytes,
        "write_syscalls_per_rating": round(writes / n, 3),
        "bytes_written_per_rating": round(wbytes / n, 1),
        "opens_for_write_per_rating": round(opens_w / n, 3),
        "read_syscalls_per_rating": round(reads / n, 1),
        "bytes_read_per_rating": round(rbytes / n, 1),
        "other_files_written": other,
    }


# ---------------------------------------------------------------------------------- workload
def make_rating(rig: Rig, tapper: Tapper, rng: random.Random) -> tuple[int, int]:
    """Open a session, press a rating button. -> (rating n, taps lost and repeated)"""
    dev, peer = rig.dev, rig.peer
    sess = "%016x" % rng.getrandbits(64)  # a gateway service id: 16 hex characters
    since = len(dev.events)
    peer.prompt(sess)
    dev.wait_event("session", lambda d: d.get("op") == "open" and d.get("sess") == sess, since=since)
    since = len(dev.events)
    ev, extra = press_until(dev, tapper, rng.randint(1, 5), "rating", lambda d: d.get("sess") == sess, since)
    return ev.data["n"], extra


def ack(rig: Rig, n: int) -> None:
    dev, peer = rig.dev, rig.peer
    since = len(dev.events)
    # the rating must have reached the gateway before it can be acked
    peer.wait_for(lambda: n in peer.ratings, 15, f"rating {n} at the gateway")
    peer.ack("D07", n, "ok")
    dev.wait_event("ack", lambda d: d.get("n") == n, since=since)


def graceful_stop(dev) -> int | None:
    """Close the control connection: the host board then exits (status 0), so strace can finish
    its log. Falls back to SIGKILL."""
    try:
        if dev._sock is not None:
            # shutdown, not only close: the runner's reader thread is blocked in recv() on this
            # socket, and a close() alone then sends no FIN, so the device would never see EOF
            dev._sock.shutdown(socket.SHUT_RDWR)
        dev._close()
        return dev.proc.wait(timeout=10) if dev.proc is not None else None
    except Exception:  # noqa: BLE001  # teardown: make sure it is gone
        dev.kill()
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="200 steady ratings (+100 backlog) instead of 1000 (+500)")
    ap.add_argument("--ratings", type=int, help="steady ratings (backlog: half as many)")
    ap.add_argument("--no-strace", dest="strace", action="store_false", help="model only")
    ap.add_argument("--seed", type=int, default=20261121)
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (flash, logs)")
    args = ap.parse_args()
    n_steady = args.ratings or (200 if args.quick else 1000)
    n_backlog = max(BATCH, (n_steady // 2) // BATCH * BATCH)
    rng = random.Random(args.seed)
    started = time.monotonic()
    env = env_info()

    work = Path(tempfile.mkdtemp(prefix="hcp-bench-flash-"))
    log_env = "HCP_BENCH_STRACE_LOG"
    saved_path = os.environ.get("PATH", "")
    bindir = strace_wrapper(work, log_env) if args.strace else None
    method = "strace+model" if bindir else "model"
    if args.strace and not bindir:
        log("strace not available here: model only")
    if bindir:
        os.environ["PATH"] = f"{bindir}:{saved_path}"
        os.environ[log_env] = str(work / "strace-boot1.log")
    steady, backlog = Tally(), Tally()
    marks: dict[str, float] = {}
    retaps = 0  # taps the device never saw (event loop stalled past the hold), repeated
    boot2: dict = {}
    try:
        # Nagle off on broker and peer: acks come back in ~1 ms instead of ~40 ms (see firmware_latency)
        with Rig("flash", keep=args.keep, broker_config="set_tcp_nodelay true", peer_nodelay=True) as rig:
            rig.peer.auto_ack = False
            dev = rig.dev
            flash = dev.flash_dir
            wait_online(dev)
            dev.wait_state("idle")
            tapper = Tapper(dev, 150)  # strace slows the device: a longer hold still registers
            watch = FileWatch(flash)
            boot_json_size = (flash / "boot.json").stat().st_size

            log(f"steady: {n_steady} ratings, each acked at once ({method})")
            marks["steady0"] = time.time()
            for i in range(n_steady):
                n, extra = make_rating(rig, tapper, rng)
                retaps += extra
                steady.add(watch.step())
                ack(rig, n)
                steady.add(watch.step())
                if (i + 1) % 200 == 0:
                    log(f"steady {i + 1}/{n_steady}: {steady.per(i + 1)}")
            marks["steady1"] = time.time()

            log(f"backlog: {n_backlog} ratings in batches of {BATCH}, acked after each batch")
            marks["backlog0"] = time.time()
            max_journal = 0
            for b in range(n_backlog // BATCH):
                made = []
                for _ in range(BATCH):
                    n, extra = make_rating(rig, tapper, rng)
                    retaps += extra
                    made.append(n)
                    backlog.add(watch.step())
                    max_journal = max(max_journal, (flash / "outbox.log").stat().st_size)
                for n in made:
                    ack(rig, n)
                    backlog.add(watch.step())
                log(f"backlog batch {b + 1}/{n_backlog // BATCH}: {backlog.per((b + 1) * BATCH)}")
            marks["backlog1"] = time.time()
            journal_end = (flash / "outbox.log").stat().st_size

            # one reboot: boot.json rewrite and reading the journal back
            if bindir:
                os.environ[log_env] = str(work / "strace-boot2.log")
            rc1 = graceful_stop(dev)
            watch.step()
            marks["boot2_0"] = time.time()
            since = 0
            dev.start()
            boot_ev = dev.wait_event("boot", since=since)
            wait_online(dev)
            marks["boot2_1"] = time.time()
            boot_change = watch.step()
            rc2 = graceful_stop(dev)
            boot2 = {"boot_event": boot_ev.data, "journal_bytes_at_boot": journal_end,
                     "files_changed": boot_change, "exit_codes_on_control_eof": [rc1, rc2]}
            if rc1 or rc2:
                boot2["console_tail"] = dev.console_text()[-800:]

        figures: dict = {
            "bench": "firmware_flash",
            "quick": args.quick,
            "seed": args.seed,
            "method": method,
            "ratings": {"steady": n_steady, "backlog": n_backlog, "backlog_batch": BATCH},
            "rating_payload_sess": "16 hex characters (a gateway service id)",
            "model": {"steady": steady.per(n_steady), "backlog": backlog.per(n_backlog),
                      "max_journal_bytes_backlog": max_journal},
            "per_boot_model": {"boot_json_bytes": boot_json_size, "files": boot2.get("files_changed")},
            "boot2": boot2,
        }
        # headline figures: steady state, from strace when there is one
        if bindir:
            calls1 = parse_strace(work / "strace-boot1.log", flash)
            calls2 = parse_strace(work / "strace-boot2.log", flash)
            s_steady = strace_figures(calls1, marks["steady0"], marks["steady1"], n_steady)
            s_backlog = strace_figures(calls1, marks["backlog0"], marks["backlog1"], n_backlog)
            boot_w = [c for c in calls2 if c[1] in ("write", "writev", "pwrite64")]
            boot_r = [c for c in calls2 if c[1] in ("read", "readv", "pread64") and c[2].startswith("outbox.log")]
            figures["strace"] = {
                "steady": s_steady, "backlog": s_backlog,
                "per_boot": {
                    "write_syscalls": len(boot_w), "bytes_written": sum(max(0, c[3]) for c in boot_w),
                    "files_written": sorted({c[2] for c in boot_w}),
                    "renames": sum(1 for c in calls2 if c[1].startswith("rename")),
                    "journal_read_syscalls": len(boot_r),
                    "journal_bytes_read": sum(max(0, c[3]) for c in boot_r),
                },
            }
            figures["ratio"] = round(s_steady["bytes_written"] / max(1, steady.bytes), 4)
            figures["ratio_is"] = "steady bytes written: strace / model (1.0 = the two methods agree)"
            figures["write_syscalls_per_rating"] = s_steady["write_syscalls_per_rating"]
            figures["bytes_per_rating"] = s_steady["bytes_written_per_rating"]
        else:
            figures["bytes_per_rating"] = steady.per(n_steady)["bytes_per_rating"]
        # A flash write is a file commit: littlefs programs an append's data at its close, however
        # many write() calls filled it (a rating's record is written as three parts, no copy).
        figures["writes_per_rating"] = steady.per(n_steady)["commits_per_rating"]
        figures["writes_per_rating_source"] = "model: file commits (one append or one rewrite) / rating"
        figures["lost_taps_repeated"] = retaps
        figures["file_commits_per_rating"] = steady.per(n_steady)["commits_per_rating"]
        figures["backlog_bytes_per_rating"] = backlog.per(n_backlog)["bytes_per_rating"]
        figures["backlog_file_commits_per_rating"] = backlog.per(n_backlog)["commits_per_rating"]
        figures["wall_s"] = round(time.monotonic() - started, 1)
        figures.update(env)
    finally:
        os.environ["PATH"] = saved_path
        os.environ.pop(log_env, None)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"kept {work}")
    emit(figures)


if __name__ == "__main__":
    main()
