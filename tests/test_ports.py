"""The tests' ports (tests/fixtures/ports.py): a block per pytest-xdist worker below the kernel's
ephemeral range, each port reserved (left in TIME_WAIT) so that no other process takes it before
the server it is for, which can."""

from __future__ import annotations

import socket

import pytest

from simulator import broker, services
from simulator.broker import Broker
from tests.fixtures import ports


def test_the_workers_blocks_are_apart_and_below_the_ephemeral_range(monkeypatch):
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "4")
    blocks = []
    for index in range(4):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", f"gw{index}")
        block = ports.block_for_this_process()
        assert block is not None
        blocks.append((block.start, block.stop))
    blocks.sort()
    assert blocks[0][0] >= ports.FIRST_PORT and blocks[-1][1] <= ports._ephemeral_start()
    assert all(a[1] <= b[0] for a, b in zip(blocks, blocks[1:]))
    assert all(stop - start >= ports.MIN_BLOCK for start, stop in blocks)


def test_a_reserved_port_is_refused_to_others_and_taken_by_the_broker(tmp_path):
    port = broker.free_port()
    assert not ports.reserve(port)  # another test process asking for it is refused
    with socket.socket() as other, pytest.raises(OSError):
        other.bind((ports.HOST, port))
    with Broker(tmp_path / "mosquitto", port=port) as running:  # SO_REUSEADDR: it may
        assert running.running and running.port == port


def _three_unheld_ports(block: ports.PortBlock) -> int:
    """The first of three ports of `block` nothing holds now (checked without reserving)."""
    for first in range(block.start, block.stop - 2):
        try:
            for port in range(first, first + 3):
                with socket.socket() as probe:
                    probe.bind((ports.HOST, port))
        except OSError:
            continue
        return first
    raise AssertionError("no three free ports in this process's block")


def test_ports_come_in_turn_and_a_held_one_is_skipped():
    mine = ports.installed
    assert mine is not None, "tests/conftest.py installs the block before any test"
    first = _three_unheld_ports(mine)
    block = ports.PortBlock(first, first + 3)
    block._next = first
    with socket.socket() as held:
        held.bind((ports.HOST, first + 1))
        assert [block.free_port(), block.free_port()] == [first, first + 2]
        with pytest.raises(RuntimeError, match="no free port"):  # the two are reserved now
            block.free_port()


def test_the_simulator_takes_its_ports_from_this_process_block():
    block = ports.installed
    assert block is not None
    assert broker.free_port == services.free_port == block.free_port
    for _ in range(3):
        assert block.start <= broker.free_port() < block.stop


def test_without_room_below_the_ephemeral_range_the_kernel_chooses(monkeypatch):
    monkeypatch.setattr(ports, "_ephemeral_start", lambda: ports.FIRST_PORT + 100)
    assert ports.block_for_this_process() is None
