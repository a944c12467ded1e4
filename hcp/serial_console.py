"""The technician's end of the device's serial console (docs/serial-console.md), over pyserial:
finding the device's port, and one request -> one answer, with the self-test's progress lines.

Errors are `ConsoleError` with a message a technician can act on: a port that does not exist or
cannot be opened, a port where nothing answers the console (another device, a board without the
firmware, a device that is hung), a command the device refused.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import serial
from serial.tools import list_ports

BAUD = 115200  # the USB CDC console ignores it; a USB-UART bridge (ESP32 boards) needs it
PROBE_TIMEOUT_S = 3.0
ANSWER_TIMEOUT_S = 10.0
# USB vendor/product ids of the boards and USB-UART bridges the firmware runs behind
# (None: any product of that vendor).
KNOWN_USB = {
    (0x2E8A, None): "Raspberry Pi (Pico W, MicroPython USB CDC)",
    (0x303A, None): "Espressif (ESP32-S2/S3/C3 USB)",
    (0x10C4, 0xEA60): "Silicon Labs CP210x (ESP32 boards)",
    (0x1A86, 0x7523): "WCH CH340 (ESP32 boards)",
    (0x1A86, 0x55D4): "WCH CH9102 (ESP32 boards)",
    (0x0403, 0x6001): "FTDI FT232R",
}


class ConsoleError(Exception):
    """What went wrong, in words for the technician."""


@dataclass(frozen=True)
class Candidate:
    port: str
    description: str
    known: str | None  # the board or bridge its USB ids name, None if they name none we know


def known_usb(vid: int | None, pid: int | None) -> str | None:
    if vid is None:
        return None
    return KNOWN_USB.get((vid, pid)) or KNOWN_USB.get((vid, None))


def candidates() -> list[Candidate]:
    """Serial ports, those whose USB ids we know first."""
    found = [Candidate(p.device, p.description or "", known_usb(p.vid, p.pid))
             for p in list_ports.comports()]
    return sorted(found, key=lambda c: (c.known is None, c.port))


class Console:
    """An open console. `on_event(obj)` gets every `ev` line (self-test progress)."""

    def __init__(self, port: str, timeout: float = ANSWER_TIMEOUT_S):
        self.port = port
        self.timeout = timeout
        try:
            self.ser = serial.Serial(port, BAUD, timeout=0.1, write_timeout=5)
        except serial.SerialException as exc:
            text = str(exc)
            if "No such file" in text or "Errno 2]" in text:
                raise ConsoleError(f"no serial port {port}: is the device plugged in? "
                                   f"`hcp provision --list` shows the ports found") from None
            if "Permission denied" in text:
                raise ConsoleError(f"no permission to open {port}: add yourself to the "
                                   f"`dialout` group (Linux), log in again, and retry") from None
            if "busy" in text.lower() or "in use" in text.lower():
                raise ConsoleError(f"{port} is in use by another program (a terminal, mpremote): "
                                   f"close it and retry") from None
            raise ConsoleError(f"cannot open {port}: {text}") from None
        self._buf = b""

    def close(self) -> None:
        self.ser.close()

    def __enter__(self) -> "Console":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _line(self, deadline: float) -> str | None:
        """The next whole line before `deadline`, or None."""
        while True:
            if b"\n" in self._buf:
                raw, self._buf = self._buf.split(b"\n", 1)
                return raw.decode("utf-8", "replace").strip()
            if time.monotonic() >= deadline:
                return None
            try:
                chunk = self.ser.read(self.ser.in_waiting or 1)
            except serial.SerialException as exc:
                raise ConsoleError(f"the device on {self.port} went away ({exc}): was it "
                                   f"unplugged or reset?") from None
            self._buf += chunk

    def ask(self, line: str, timeout: float | None = None,
            on_event: Callable[[dict], None] | None = None) -> object:
        """Send one request; -> the `ok` answer's JSON. Raises ConsoleError for `err` (the device
        refused it: nothing changed) and for silence."""
        self.ser.reset_input_buffer()
        self._buf = b""
        try:
            self.ser.write((line + "\n").encode())
        except serial.SerialException as exc:
            raise ConsoleError(f"cannot write to {self.port}: {exc}") from None
        word = line.split(" ", 1)[0]
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            text = self._line(deadline)
            if text is None:
                raise ConsoleError(f"the device on {self.port} did not answer `{word}`: is this "
                                   f"a counter device with the firmware on it, and running? "
                                   f"(unplug and plug it in, then retry)")
            if text.startswith("ev ") and on_event is not None:
                on_event(json.loads(text[3:]))
            elif text.startswith("ok "):
                return json.loads(text[3:])
            elif text.startswith("err "):
                raise ConsoleError(f"the device refused `{word}`: {text[4:]}")
            # anything else (display text, a traceback) is not for us

    def probe(self, timeout: float = PROBE_TIMEOUT_S) -> dict:
        """-> `help`'s answer, if this port has our console (protocol 1)."""
        try:
            res = self.ask("help", timeout=timeout)
        except ConsoleError:
            raise ConsoleError(f"nothing on {self.port} answers the counter device's console "
                               f"within {timeout:g} s: wrong port, another kind of device, or "
                               f"a device without the firmware (`hcp firmware deploy`)") from None
        if not isinstance(res, dict) or res.get("proto") != 1:
            raise ConsoleError(f"the device on {self.port} speaks console protocol "
                               f"{res.get('proto') if isinstance(res, dict) else '?'}, this tool 1: "
                               f"update the tool or the firmware")
        return res


def find_devices(timeout: float = PROBE_TIMEOUT_S) -> list[tuple[Candidate, dict | None]]:
    """Every candidate port with its device's `info` where a counter device answers there."""
    found: list[tuple[Candidate, dict | None]] = []
    for cand in candidates():
        info = None
        try:
            with Console(cand.port) as con:
                con.probe(timeout)
                info = con.ask("info")  # type: ignore[assignment]
        except ConsoleError:
            pass
        found.append((cand, info))
    return found
