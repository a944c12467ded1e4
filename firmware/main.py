"""Device entry point. `board` is the board file deployed next to this one (boards/<name>/board.py
on a device, or put on the module path by the host runner)."""

import board
import device

device.run(board.Board())
