"""The tests' port blocks (tests/fixtures/ports.py): one per pytest-xdist worker, below the kernel's
ephemeral range, handed out in turn, skipping what is taken."""

from __future__ import annotations

import socket

import pytest

from simulator import broker, services
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


def test_ports_come_in_turn_and_a_taken_one_is_skipped():
    mine = ports.installed
    assert mine is not None, "tests/conftest.py installs the block before any test"
    first = mine.free_port()
    while first + 3 > mine.stop:  # three ports of this process's block
        first = mine.free_port()
    block = ports.PortBlock(first, first + 3)
    block._next = first
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", first + 1))
        assert [block.free_port() for _ in range(3)] == [first, first + 2, first]


def test_the_simulator_takes_its_ports_from_this_process_block():
    block = ports.installed
    assert block is not None
    assert broker.free_port == services.free_port == block.free_port
    for _ in range(3):
        assert block.start <= broker.free_port() < block.stop


def test_without_room_below_the_ephemeral_range_the_kernel_chooses(monkeypatch):
    monkeypatch.setattr(ports, "_ephemeral_start", lambda: ports.FIRST_PORT + 100)
    assert ports.block_for_this_process() is None
