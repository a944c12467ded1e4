"""`hcp firmware deploy --port …`: copy the built firmware to a board with mpremote.

The board's flash ends up as the firmware expects it: `main.py`, `board.mpy` beside it and
`lib/*.mpy`. The device's own files (config.json, key.bin, the outbox journal) are left alone, so a
provisioned device keeps its identity across a firmware update. A `lib/*.py` left from an earlier
source deploy is removed first: MicroPython would import it ahead of the new .mpy.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from hcp.firmware_build import BOARDS, BuildError, build_mpy_firmware, find_tool

# Run on the board before copying: `lib/` exists, no stale source module shadows a new .mpy.
PREPARE = ("import os\n"
           "try:\n os.mkdir('lib')\nexcept OSError:\n pass\n"
           "for f in os.listdir('lib'):\n if f.endswith('.py'):\n  os.remove('lib/' + f)\n")
TIMEOUT_S = 300


class DeployError(RuntimeError):
    pass


def find_mpremote() -> str:
    found = find_tool("mpremote")
    if found is None:
        raise DeployError("mpremote not found: run `./run.sh setup` (pip installs mpremote)")
    return found


def deploy_command(mpremote: str, port: str, build: Path, board: str) -> list[str]:
    """The one mpremote invocation (commands chained with `+`) that installs `build` on the board
    at `port` and resets it. Paths are relative to `build` (the command runs there)."""
    libs = sorted(str(p.relative_to(build)) for p in (build / "lib").glob("*.mpy"))
    if not libs:
        raise DeployError(f"{build} holds no lib/*.mpy: run `hcp firmware build` first")
    board_file = Path("boards") / board / "board.mpy"
    if not (build / board_file).is_file():
        raise DeployError(f"{build} was not built for {board} (no {board_file})")
    return [mpremote, "connect", port,
            "exec", PREPARE,
            "+", "fs", "cp", *libs, ":lib/",
            "+", "fs", "cp", str(board_file), ":board.mpy",
            "+", "fs", "cp", "main.py", ":main.py",
            "+", "reset"]


def deploy(port: str, board: str, build: Path | None = None, timeout: float = TIMEOUT_S) -> str:
    """Build (unless `build` is given) and copy to the board -> mpremote's output."""
    if not port.upper().startswith("COM") and not os.path.exists(port):
        raise DeployError(f"no serial port {port}: is the board plugged in? "
                          f"(`hcp provision --list` shows the candidates)")
    mpremote = find_mpremote()
    with tempfile.TemporaryDirectory(prefix="hcp-fw-") as tmp:
        if build is None:
            build = build_mpy_firmware(Path(tmp), board)
        cmd = deploy_command(mpremote, port, build, board)
        try:
            proc = subprocess.run(cmd, cwd=build, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            # a port that answers, but not as a MicroPython REPL mpremote can break into
            raise DeployError(_could_not(port, f"no raw REPL within {timeout:g} s")) from None
    out = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        raise DeployError(_could_not(port, out.splitlines()[-1] if out else f"exit status {proc.returncode}"))
    return out


def _could_not(port: str, why: str) -> str:
    return (f"mpremote could not install the firmware on {port}: {why}\n"
            f"Is it a MicroPython board, with no other program (a terminal, `hcp provision`) "
            f"holding the port? Unplug it, plug it in, try again.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", required=True, help="the board's serial port, e.g. /dev/ttyACM0")
    parser.add_argument("--board", default="rp2_pico_w", choices=BOARDS,
                        help="the board file to deploy (default rp2_pico_w)")
    parser.add_argument("--from", dest="build", type=Path, default=None,
                        help="an `hcp firmware build` output to deploy (default: build now)")
    parser.add_argument("--timeout", type=float, default=TIMEOUT_S,
                        help=f"seconds mpremote may take in all (default {TIMEOUT_S})")


def run_from_args(args: argparse.Namespace) -> int:
    try:
        deploy(args.port, args.board, args.build, args.timeout)
    except (DeployError, BuildError) as exc:
        print(f"hcp firmware deploy: {exc}", file=sys.stderr)
        return 1
    print(f"firmware deployed to {args.port} ({args.board}); the board has been reset")
    return 0
