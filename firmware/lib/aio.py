"""The little the device needs beyond asyncio's core: waiting on sockets and streams, a TCP
connect, reading lines, and a flag one task waits on with a timeout.

asyncio's own Event, Lock, streams and wait_for live in four frozen submodules that hold 4.3 KB
of heap once imported (measured on the unix port); this module holds about 1 KB. It uses the two
internals of `asyncio.core` that those submodules are built on, the same way they use them:
`_io_queue` (park a task until a stream is readable or writable) and `_task_queue` (the
scheduler's queue, to wake a sleeping task early).
"""

import asyncio
import errno
import socket
from asyncio import core  # pyright: ignore[reportAttributeAccessIssue]  # MicroPython's scheduler


def readable(s):
    """`await readable(s)`: until stream `s` has data, EOF or an error."""
    yield core._io_queue.queue_read(s)


def writable(s):
    """`await writable(s)`: until stream `s` takes data (or has an error)."""
    yield core._io_queue.queue_write(s)


def wake(task):
    """Resume a task parked by `readable`/`writable` now (its stream is being closed under it).
    A task no longer parked (already woken, not yet run) is left alone: queued twice, the
    scheduler's heap would break."""
    if task.data is core._io_queue:  # where _enqueue links a parked task
        core._io_queue.remove(task)
        core._task_queue.push(task)


async def connect(host, port):
    """-> a connected non-blocking TCP socket; OSError if the connection fails."""
    ai = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
    s = socket.socket(ai[0], ai[1], ai[2])
    s.setblocking(False)
    try:
        s.connect(ai[-1])
    except OSError as exc:
        if exc.errno != errno.EINPROGRESS:
            s.close()
            raise
    await writable(s)  # pyright: ignore[reportGeneralTypeIssues]  # a generator: see readable()
    return s


async def readline(s, limit=1024):
    """The next line of stream `s` (a socket, a tty, stdin), b"" at EOF; past `limit` bytes the
    rest of a line is read and dropped (the heap is small). One byte per read: on a blocking
    stream (stdin, a board's USB REPL) readline() would wait for the newline and stall every
    task, as input without one showed (a terminal sending only CR, mpremote's Ctrl-C); a
    readable stream always has that one byte."""
    line = b""
    while True:
        await readable(s)  # pyright: ignore[reportGeneralTypeIssues]
        c = s.read(1)
        if c is None:
            continue  # woken, but a non-blocking stream had nothing after all
        if not c:
            return line  # EOF: what came before it, then b""
        if c == b"\n":
            return line + c
        if len(line) < limit:
            line += c


class Signal:
    """A flag that one task waits on with a timeout: `set()` wakes it at once. What asyncio.Event
    plus wait_for do here, without a task per wait."""

    def __init__(self):
        self.flag = False
        self._task = None  # the task in wait_ms(), sleeping in the scheduler's queue

    def set(self):
        self.flag = True
        t = self._task
        if t is not None and t.data is None:  # data set: being cancelled; leave it to that
            self._task = None
            core._task_queue.remove(t)
            core._task_queue.push(t)

    async def wait_ms(self, ms):
        """-> True if set (the flag is cleared again), False after `ms` without it."""
        if not self.flag:
            self._task = asyncio.current_task()
            try:
                await asyncio.sleep_ms(ms)
            finally:
                self._task = None
        flag = self.flag
        self.flag = False
        return flag
