"""A small real HTTP ingest endpoint answering per docs/protocol.md ("Hub ingest"), for forwarder
tests that need to steer the hub's answers (reject one key, be down, be slow) — things the real hub
(tests/fixtures/hub.py) is not meant to do on command. It keeps items by key: the same item again is
`duplicate`, another item under a key is `rejected: conflict`.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


class MiniHub:
    def __init__(self, token: str = "hub-token"):
        self.token = token
        self.items: dict[str, dict] = {}
        self.posts: list[dict] = []  # every envelope that was answered 200
        self.reject: dict[str, str] = {}  # key -> reason to reject with
        self.keyless: set[str] = set()  # rejected keys answered with `key: null`, as for an unreadable item
        self.down = False  # answer 503 to everything
        self._lock = threading.Lock()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                code, answer = hub.answer(self.path, self.headers.get("Authorization", ""), body)
                data = json.dumps(answer).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @staticmethod
    def key(item: dict) -> str:
        if item["kind"] == "rating":
            return f"rating:{item['rating']['dev']}:{item['rating']['n']}"
        if item["kind"] == "alert":
            return f"alert:{item['_hall']}:{item['id']}:{item['state']}"
        if item["kind"] == "health":
            return f"health:{item['_hall']}:{item['device']}:{item['health']['boot']}:{item['health']['up']}"
        return f"service:{item['_hall']}:{item['id']}"

    def answer(self, path: str, auth: str, body: bytes) -> tuple[int, dict]:
        if self.down:
            return 503, {"detail": "down"}
        if path != "/api/v1/ingest":
            return 404, {"detail": "not found"}
        if auth != f"Bearer {self.token}":
            return 401, {"detail": "bad token"}
        try:
            env = json.loads(body)
            assert env["v"] == 1 and isinstance(env["items"], list)
        except (ValueError, KeyError, AssertionError, TypeError):
            return 400, {"detail": "bad envelope"}
        if len(env["items"]) > 1000:
            return 413, {"detail": "too many items"}
        results = []
        with self._lock:
            for item in env["items"]:
                key = self.key({**item, "_hall": env["hall"]})
                if key in self.reject:
                    answer_key = None if key in self.keyless else key
                    results.append({"key": answer_key, "status": "rejected", "reason": self.reject[key]})
                elif key not in self.items:
                    self.items[key] = item
                    results.append({"key": key, "status": "accepted"})
                elif self.items[key] == item:
                    results.append({"key": key, "status": "duplicate"})
                else:
                    results.append({"key": key, "status": "rejected", "reason": "conflict"})
            self.posts.append(env)
        return 200, {"v": 1, "results": results}

    def start(self) -> "MiniHub":
        self.thread.start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def mini_hub():
    hub = MiniHub().start()
    try:
        yield hub
    finally:
        hub.close()
