"""The QR citizens' phones in `hcp sim` (simulator/sim.py): a citizen who scans the device's QR
code opens the hub's phone rating page (`GET /r/{token}`, docs/phone.md) as a phone's browser
would, reads the form from its HTML and sends the overall rating (`POST`), later than a press
would come (`plan.PHONE_S` of hall time). `Phones` runs those jobs at their due times on a few
threads; `Phone.rate` is one phone's visit to the page.

Each phone connects from an address of its own (127.100.x.y, where the system lets a socket bind
there, as Linux does for all of 127/8), as phones on mobile data do: the page limits posts per
client address, and a busy hall's phones from one address would be refused (429).
"""

from __future__ import annotations

import heapq
import itertools
import socket
import threading
import time
from html.parser import HTMLParser
from typing import Any, Callable
from urllib.parse import urljoin

import httpx

PHONE_WORKERS = 8  # QR citizens' phones talking to the hub at once; more wait their turn
PHONE_RETRY_S = 60.0  # real seconds a phone keeps trying a hub that does not answer (an outage)
PHONE_RETRY_PAUSE_S = 1.0
PHONE_HTTP_S = 10.0
PHONE_DRAIN_S = 60.0  # at the end: real seconds for the phones still to send (sent at once then)
PHONE_UA = ("Mozilla/5.0 (Linux; Android 14; 23127PN0CC) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/118.0.0.0 Mobile Safari/537.36")
PHONE_ADDRESSES = "127.100"  # each phone connects from 127.100.x.y (mobile data: an address of its own)


class Phones:
    """The QR citizens' phones: each one's job runs at its due time (time.monotonic()) on one of a
    few threads, so a window's thread never waits for a phone (the next citizen comes meanwhile).
    `finish()` runs what is still due at once and waits for every job to end."""

    def __init__(self, workers: int):
        self._workers = workers
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._busy = 0
        self._hurry = False
        self._threads: list[threading.Thread] = []
        self._cond = threading.Condition()

    def add(self, due: float, job: Callable[[], None]) -> None:
        with self._cond:
            heapq.heappush(self._heap, (due, next(self._seq), job))
            if not self._threads:  # started with the first phone: a hall with none has no threads
                self._threads = [threading.Thread(target=self._work, name=f"phone-{i}", daemon=True)
                                 for i in range(self._workers)]
                for th in self._threads:
                    th.start()
            self._cond.notify_all()

    def _work(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._heap:
                        left = self._heap[0][0] - time.monotonic()
                        if left <= 0 or self._hurry:
                            job = heapq.heappop(self._heap)[2]
                            self._busy += 1
                            break
                        self._cond.wait(left)
                    else:
                        self._cond.wait()
            try:
                job()
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()

    def finish(self, timeout: float) -> bool:
        """Every job still due runs now; True when all have ended within `timeout` s."""
        with self._cond:
            self._hurry = True
            self._cond.notify_all()
            return self._cond.wait_for(lambda: not self._heap and not self._busy, timeout)


class PhoneForm(HTMLParser):
    """What a phone's browser reads of the page: the form's action, its hidden fields, and the
    choices of its required radio group (the overall rating)."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.hidden: dict[str, str] = {}
        self.required: str | None = None  # the required radio group's name
        self.choices: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form" and self.action is None:
            self.action = a.get("action") or ""
        elif tag == "input" and self.action is not None and a.get("name"):
            name = a["name"] or ""
            if a.get("type") == "hidden":
                self.hidden[name] = a.get("value") or ""
            elif a.get("type") == "radio" and "required" in a and self.required in (None, name):
                self.required = name
                self.choices.append(a.get("value") or "")


def own_addresses() -> bool:
    """Can a connection here come from 127.100.x.y (Linux: all of 127/8 is this machine)?"""
    try:
        with socket.socket() as s:
            s.bind((f"{PHONE_ADDRESSES}.0.2", 0))
        return True
    except OSError:
        return False


class Phone:
    """A phone's browser on the hub's phone page, in the rater's language (`lang`)."""

    def __init__(self, lang: str):
        self.lang = lang
        self._n = itertools.count(2)
        self._addresses = own_addresses()

    def _client(self) -> httpx.Client:
        transport = None
        if self._addresses:
            n = next(self._n) % (250 * 250)
            transport = httpx.HTTPTransport(local_address=f"{PHONE_ADDRESSES}.{n // 250}.{n % 250 + 2}")
        return httpx.Client(timeout=PHONE_HTTP_S, transport=transport,
                            headers={"User-Agent": PHONE_UA, "Accept-Language": self.lang})

    def rate(self, url: str, score: int) -> str:
        """Open the page as a phone's browser would, choose `score` as the overall rating, send
        the form. -> "stored" (303), the refusal's HTTP status, "closed" (the page offers no
        form: 补充评价已截止, or done), "followup" (only the follow-up form: the service has its
        overall rating), or "unreachable" (the hub did not answer for PHONE_RETRY_S)."""
        with self._client() as http:
            page = self._request(http, "GET", url)
            if page is None:
                return "unreachable"
            if page.status_code != 200:
                return str(page.status_code)
            form = PhoneForm()
            form.feed(page.text)
            if form.action is None:
                return "closed"
            if form.required is None or str(score) not in form.choices:
                return "followup"
            sent = self._request(http, "POST", urljoin(url, form.action),
                                       data={**form.hidden, form.required: str(score)})
            if sent is None:
                return "unreachable"
            return "stored" if sent.status_code == 303 else str(sent.status_code)

    def _request(self, http: httpx.Client, method: str, url: str, **kwargs: Any) -> httpx.Response | None:
        """Tries again while the hub does not answer (a form posted twice is stored once: its
        nonce); None after PHONE_RETRY_S."""
        deadline = time.monotonic() + PHONE_RETRY_S
        while True:
            try:
                return http.request(method, url, **kwargs)
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    return None
                time.sleep(PHONE_RETRY_PAUSE_S)
