"""Limits on posts to the phone page, per token (one service) and per client address: a script
that hammers one token, or one address that posts for many, is told to wait (429) instead of
reaching the database each time.

In this process's memory: a hub behind a load balancer with several processes allows each of
them the limit (the database's keys still allow one rating per service whatever the rate). The
address is the connection's peer as uvicorn reports it; behind a reverse proxy run uvicorn with
its proxy headers on (`--forwarded-allow-ips`), or every phone looks like the proxy.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Hashable

POSTS_PER_TOKEN = 10  # in WINDOW_S: a person corrects a form a few times, never ten
POSTS_PER_ADDRESS = 60  # in WINDOW_S: a hall's Wi-Fi puts many citizens behind one address
REFUSED_PER_ADDRESS = 30  # bad tokens from one address counted in WINDOW_S before it must wait
WINDOW_S = 600.0
MAX_KEYS = 100_000  # keys remembered; the oldest are forgotten beyond it (memory stays bounded)


class SlidingWindow:
    """At most `limit` hits per key in any `window_s` seconds."""

    def __init__(self, limit: int, window_s: float = WINDOW_S,
                 clock: Callable[[], float] = time.monotonic, max_keys: int = MAX_KEYS):
        self.limit, self.window_s, self.clock, self.max_keys = limit, window_s, clock, max_keys
        self._hits: dict[Hashable, deque[float]] = {}

    def hit(self, key: Hashable) -> bool:
        """Count a hit for `key`; False when it is over the limit (the hit is not counted then)."""
        now = self.clock()
        hits = self._hits.pop(key, None) or deque()
        while hits and hits[0] <= now - self.window_s:
            hits.popleft()
        allowed = len(hits) < self.limit
        if allowed:
            hits.append(now)
        self._hits[key] = hits  # re-inserted: the dict's order is least recently used first
        while len(self._hits) > self.max_keys:
            self._hits.pop(next(iter(self._hits)))
        return allowed


class PhoneLimits:
    """The page's limits (module docstring)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.per_token = SlidingWindow(POSTS_PER_TOKEN, clock=clock)
        self.per_address = SlidingWindow(POSTS_PER_ADDRESS, clock=clock)
        self.refused = SlidingWindow(REFUSED_PER_ADDRESS, clock=clock)

    def post(self, service_key: Hashable, address: str) -> bool:
        """May this post go on? Both limits count it."""
        return self.per_token.hit(service_key) & self.per_address.hit(address)
