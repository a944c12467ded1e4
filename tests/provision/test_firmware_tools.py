"""`hcp firmware build` (mpy-cross) and `hcp firmware deploy` (mpremote), as far as they can be
run without a board: the build, the mpremote command, and the errors a technician meets."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from hcp.cli import main
from hcp.firmware_build import FIRMWARE
from hcp.firmware_deploy import PREPARE, deploy_command
from simulator.device_process import DeviceProcess


def test_build_compiles_every_module_and_the_board_file(tmp_path, capsys):
    out = tmp_path / "fw"
    assert main(["firmware", "build", "--board", "rp2_pico_w", "--out", str(out)]) == 0
    built = sorted(p.name for p in (out / "lib").iterdir())
    assert built == sorted(p.stem + ".mpy" for p in (FIRMWARE / "lib").glob("*.py"))
    assert (out / "boards" / "rp2_pico_w" / "board.mpy").read_bytes()[:1] == b"M"  # .mpy magic
    assert (out / "main.py").read_text() == (FIRMWARE / "main.py").read_text()
    assert f"for rp2_pico_w in {out}" in capsys.readouterr().out


def test_the_built_host_firmware_runs_and_answers_its_console(tmp_path):
    out = tmp_path / "fw"
    assert main(["firmware", "build", "--board", "host", "--out", str(out)]) == 0
    dev = DeviceProcess(tmp_path / "flash", console="pipe", firmware=out).start()
    try:
        kind, info = dev.console("info")
        assert kind == "ok" and info["board"] == "host" and info["provisioned"] is False
    finally:
        dev.kill()


def test_firmware_without_an_action_says_what_it_takes(capsys):
    assert main(["firmware"]) == 2
    err = capsys.readouterr().err
    assert "hcp firmware build:" in err and "hcp firmware deploy:" in err


def test_deploy_command_installs_lib_board_and_main_then_resets(tmp_path):
    out = tmp_path / "fw"
    assert main(["firmware", "build", "--board", "esp32", "--out", str(out)]) == 0
    cmd = deploy_command("mpremote", "/dev/ttyUSB0", out, "esp32")
    assert cmd[:5] == ["mpremote", "connect", "/dev/ttyUSB0", "exec", PREPARE]
    assert cmd[5] == "+"
    steps = " ".join(cmd[6:]).split(" + ")
    libs = " ".join(sorted(f"lib/{p.stem}.mpy" for p in (FIRMWARE / "lib").glob("*.py")))
    assert steps == [f"fs cp {libs} :lib/", "fs cp boards/esp32/board.mpy :board.mpy",
                     "fs cp main.py :main.py", "reset"]
    # the board's own files are never named: config, key and outbox survive an update
    assert "rm" not in cmd and not any(w in " ".join(cmd) for w in ("config.json", "key.bin", "outbox.log"))
    assert main(["firmware", "deploy", "--port", "/dev/null", "--board", "host",
                 "--from", str(out)]) == 1  # built for esp32, asked for host


def test_deploy_to_a_missing_port_is_a_clear_error(capsys):
    assert main(["firmware", "deploy", "--port", "/dev/ttyNOSUCH9", "--board", "host"]) == 1
    err = capsys.readouterr().err
    assert "no serial port /dev/ttyNOSUCH9: is the board plugged in?" in err


@pytest.mark.slow
def test_deploy_to_something_that_is_not_a_micropython_repl_is_a_clear_error(tmp_path, capsys):
    """The real firmware on a pty answers its provisioning console, not mpremote's raw REPL."""
    out = tmp_path / "fw"
    assert main(["firmware", "build", "--board", "host", "--out", str(out)]) == 0
    dev = DeviceProcess(tmp_path / "flash", console="pty").start()
    try:
        started = time.monotonic()
        # The firmware keeps answering its console (no hang, no watchdog reset): mpremote waits
        # for a raw REPL that never comes, until the deploy's time limit.
        code = main(["firmware", "deploy", "--port", dev.console_path, "--board", "host",
                     "--from", str(out), "--timeout", "15"])
        assert code == 1 and time.monotonic() - started < 60
        assert dev.running
        err = capsys.readouterr().err
        assert f"mpremote could not install the firmware on {dev.console_path}" in err
        assert "Is it a MicroPython board" in err
        assert not (Path(dev.flash_dir) / "lib").exists()  # nothing was written to its flash
    finally:
        dev.kill()
