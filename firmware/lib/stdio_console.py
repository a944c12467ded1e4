"""The serial console's streams on boards whose USB serial port is the interpreter's stdin/stdout
(the REPL UART on ESP32 and Pico W: main.py runs instead of the REPL; a pipe or pty on the host)."""

import sys


class StdioConsole:
    @property
    def console_in(self):
        """Binary stdin: a text stream would raise inside readline on bytes that are not UTF-8."""
        return sys.stdin.buffer

    def console_write(self, text):
        sys.stdout.write(text)
