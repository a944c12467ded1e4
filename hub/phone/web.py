"""The phone rating page behind the device's QR code: `GET /r/{token}` and `POST /r/{token}`.

Plain HTML forms, no JavaScript: GET shows what the service allows now (hub/phone/rules.py: the
supplementary rating, one follow-up, "done" or "closed"); POST checks the form and, when it is
stored, redirects (303) to `GET /r/{token}?sent=…`, so a reload never posts again. Every page is
rendered from templates/ with the words of messages.toml in the chosen language (hub/phone/i18n.py).

Protection for an anonymous form: the token itself (signed by the hall's gateway, expiring), a
per-form nonce bound to it (token.make_nonce: a cross-site form cannot make one; a repeat of a
stored form is recognised by it and changes nothing), browsers' `Sec-Fetch-Site: cross-site`
refused, limits per token and per address (limits.py), and responses that are not cached, not
framed and send no Referer (the token is in the URL). A page never answers 500 for what a client
sends: every refusal is a page that says what happened, and is counted (`phone_counts`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ..config import HubSettings
from ..default_rules import CHINA_TZ, default_deadline
from ..defaults import parse_time
from ..store import HubStore
from ..store.phone_sql import PhoneSubmission
from ..workdays import WorkCalendar
from . import form as forms
from . import rules
from .crypto import Keyring, aad
from .i18n import LANGS, Catalogue, catalogue, choose
from .limits import PhoneLimits
from .token import Claims, TokenRefused, check_nonce, make_nonce, read_claims, verify

log = logging.getLogger("hub.phone")

TEMPLATES = Path(__file__).with_name("templates")
MAX_FORM_FIELDS = 40  # name, phone, comment, lang, kind, nonce, three levels and twelve tags fit
REFUSED_STATUS = {"malformed": 400, "unknown_hall": 403, "forged": 403, "expired": 410}
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
}

router = APIRouter(include_in_schema=False)


@dataclass
class PhonePage:
    """What the page needs besides the store: the words, the templates, the contact keys (None:
    the page asks for no name or number), the post limits, the working-day calendar."""

    words: Catalogue
    env: jinja2.Environment
    keyring: Keyring | None
    calendar: WorkCalendar
    limits: PhoneLimits = field(default_factory=PhoneLimits)
    clock: Any = time.time


def install(app: FastAPI, settings: HubSettings, calendar: WorkCalendar) -> None:
    """Mount the page on `app`. A key file that cannot be used stops the start here (a hub that
    silently dropped the contact fields would be worse), as a bad holiday file does."""
    keyring = Keyring.load(settings.phone_key_file) if settings.phone_key_file is not None else None
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    app.state.phone = PhonePage(catalogue(), env, keyring, calendar)
    app.include_router(router)


def _page(request: Request) -> PhonePage:
    return request.app.state.phone


def _store(request: Request) -> HubStore:
    return request.app.state.store


def _china_day(now: float) -> str:
    return datetime.fromtimestamp(now, CHINA_TZ).date().isoformat()


async def _count(request: Request, hall: str | None, what: str) -> None:
    """Count a page event; a failure to count is logged, never the citizen's problem."""
    try:
        await _store(request).phone_count(_china_day(_page(request).clock()), hall or "", what)
    except Exception:
        log.exception("phone page: could not count %s", what)


# ---------------------------------------------------------------------------- rendering


@dataclass
class View:
    """One rendering of a page: its language and everything the templates show."""

    request: Request
    token: str
    lang: str
    values: dict[str, list[str]] = field(default_factory=dict)  # a posted form shown again

    def t(self, key: str, **values: Any) -> str:
        return _page(self.request).words.text(self.lang, key, **values)

    def url(self, **query: str) -> str:
        base = f"/r/{quote(self.token, safe='')}"
        return base + ("?" + urlencode(query) if query else "")

    def date(self, day: Any) -> str:
        return self.t("date", y=day.year, m=day.month, d=day.day, m2=f"{day.month:02}", d2=f"{day.day:02}")

    def render(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        page = _page(self.request)
        words = page.words
        language = words.languages[self.lang]
        switcher = [(code, words.languages[code].name, self.url(lang=code)) for code in LANGS]
        html = page.env.get_template(template).render(
            t=self.t, lang=self.lang, dir=language.dir, switcher=switcher, view=self, values=self.values,
            official=lambda score: words.text("zh-Hans", f"level.{score}"),  # the program's own words
            **context)
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def _refused(view: View, reason: str) -> HTMLResponse:
    return view.render("message.html", REFUSED_STATUS.get(reason, 400), title=view.t("refused.title"),
                       body=view.t(f"refused.{reason}"), tone="error")


async def _verified(request: Request, view: View) -> tuple[Claims, bytes] | HTMLResponse:
    """The token's claims and its gateway key, or the refusal page (counted)."""
    page = _page(request)
    store = _store(request)
    try:
        key = await store.gateway_key(read_claims(view.token).hall)
        claims = verify(key, view.token, page.clock())
    except TokenRefused as refused:
        address = request.client.host if request.client else ""
        if page.limits.refused.hit(address):
            await _count(request, refused.hall, f"refused_{refused.reason}")
        return _refused(view, refused.reason)
    assert key is not None  # verify refused unknown_hall otherwise
    return claims, key


async def _deadline(request: Request, claims: Claims, state: rules.PhoneState) -> datetime | None:
    """When the supplementary rating closes: the region's default deadline, counted from the
    service's finished_at if the service has reached the hub, else from when the gateway issued
    the token (the session opened then, at or before the end of the service). None when the hall
    is in no region (no rule: the default job waits too) or the time cannot be read."""
    region = await _store(request).hall_region(claims.hall)
    if region is None:
        return None
    base = parse_time(state.info.finished_at) if state.info is not None and state.info.finished_at else None
    try:
        if base is None:
            base = datetime.fromtimestamp(claims.issued_at, CHINA_TZ)
        return default_deadline(base, region.default_rule, _page(request).calendar).due
    except (ValueError, OverflowError, OSError):  # a time beyond the calendar (an exp in year 36812)
        return None


def _last_day(due: datetime) -> Any:
    return (due.astimezone(CHINA_TZ) - timedelta(days=1)).date()


async def _form_page(request: Request, view: View, claims: Claims, key: bytes, state: rules.PhoneState,
                     mode: str, due: datetime | None, *, status: int = 200, errors: dict[str, str] | None = None,
                     notice: str | None = None, nonce: str | None = None) -> HTMLResponse:
    page = _page(request)
    hall_name = await _store(request).hall_name(claims.hall)
    if mode == rules.OFFER_SUPPLEMENTARY:
        title = view.t("supplementary.title")
        intro = (view.t("supplementary.intro", due=view.date(_last_day(due))) if due is not None
                 else view.t("supplementary.intro_open"))
    else:
        title = view.t("followup.title")
        intro = view.t(f"followup.intro.{state.overall_channel}")
    return view.render(
        "form.html", status, title=title, intro=intro, mode=mode, claims=claims, hall_name=hall_name,
        info=state.info, errors=errors or {}, notice=notice,
        nonce=nonce or make_nonce(key, view.token, page.clock()),
        contact_enabled=page.keyring is not None, levels=forms.SCORES, good_tags=forms.GOOD_TAGS,
        bad_tags=forms.BAD_TAGS)


def _message(view: View, mode: str, state: rules.PhoneState, due: datetime | None) -> HTMLResponse:
    if mode == rules.DONE:
        return view.render("message.html", title=view.t("done.title"), body=view.t("done.body"), tone="ok")
    if state.info is not None and state.info.outcome == "no_show" and not state.defaulted:
        body = view.t("closed.no_show")
    elif due is not None and not state.defaulted:
        body = view.t("closed.body", due=view.date(_last_day(due)))
    else:
        body = view.t("closed.defaulted")
    return view.render("message.html", title=view.t("closed.title"), body=body, tone="info")


# ---------------------------------------------------------------------------- routes


@router.get("/r/{token}", response_class=HTMLResponse)
async def show(request: Request, token: str, lang: str | None = None, sent: str | None = None) -> Response:
    view = View(request, token, choose(lang, request.headers.get("accept-language")))
    verified = await _verified(request, view)
    if isinstance(verified, HTMLResponse):
        return verified
    claims, key = verified
    state = await _store(request).phone_state(claims.hall, claims.service)
    due = await _deadline(request, claims, state)
    now = datetime.fromtimestamp(_page(request).clock(), UTC)
    mode = rules.page_mode(state, now, due)
    if sent in forms.KINDS and sent in state.records:
        record = state.records[sent]
        body = (view.t("thanks.supplementary", level=view.t(f"level.{record.score}"))
                if sent == forms.SUPPLEMENTARY else view.t("thanks.followup"))
        more = view.url(lang=view.lang) if mode == rules.OFFER_FOLLOWUP else None
        return view.render("message.html", title=view.t("thanks.title"), body=body, tone="ok", more=more)
    if mode in (rules.OFFER_SUPPLEMENTARY, rules.OFFER_FOLLOWUP):
        return await _form_page(request, view, claims, key, state, mode, due)
    if mode == rules.CLOSED:
        await _count(request, claims.hall, "closed")
    return _message(view, mode, state, due)


@router.post("/r/{token}", response_class=HTMLResponse)
async def submit(request: Request, token: str) -> Response:
    page = _page(request)
    try:
        posted = await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)
        fields: dict[str, list[str]] = {}
        for name, value in posted.multi_items():
            if isinstance(value, str):
                fields.setdefault(name, []).append(value)
    except Exception:  # not a form, too many fields, a file: nothing a person's browser sends
        fields = {}
    lang_values = fields.get("lang", [])
    view = View(request, token, choose(lang_values[0] if len(lang_values) == 1 else None,
                                       request.headers.get("accept-language")))
    verified = await _verified(request, view)
    if isinstance(verified, HTMLResponse):
        return verified
    claims, key = verified
    if request.headers.get("sec-fetch-site") == "cross-site":
        await _count(request, claims.hall, "cross_site")
        return _refused(view, "forged")
    address = request.client.host if request.client else ""
    if not page.limits.post((claims.hall, claims.service), address):
        await _count(request, claims.hall, "rate_limited")
        return view.render("message.html", 429, title=view.t("refused.title"), body=view.t("refused.busy"),
                           tone="error")
    store = _store(request)
    state = await store.phone_state(claims.hall, claims.service)
    due = await _deadline(request, claims, state)
    mode = rules.page_mode(state, datetime.fromtimestamp(page.clock(), UTC), due)
    kinds, nonces = fields.get("kind", []), fields.get("nonce", [])
    kind = kinds[0] if len(kinds) == 1 and kinds[0] in forms.KINDS else None
    nonce = check_nonce(key, token, nonces[0], page.clock()) if len(nonces) == 1 else None
    view.values = {name: values for name, values in fields.items()
                   if name in ("business", "service", "tag", "comment", "name", "phone", "score")}
    if kind is None or nonce is None:
        await _count(request, claims.hall, "stale_form")
        if mode in (rules.OFFER_SUPPLEMENTARY, rules.OFFER_FOLLOWUP):
            return await _form_page(request, view, claims, key, state, mode, due, status=400,
                                    notice=view.t("notice.stale_form"))
        return _message(view, mode, state, due)
    repeat = any(r.nonce == nonce for r in state.records.values())
    if not repeat and kind == forms.SUPPLEMENTARY and mode == rules.CLOSED:
        await _count(request, claims.hall, "closed")
        return _message(view, mode, state, due)
    submission, errors = forms.parse(kind, fields, contact_allowed=page.keyring is not None)
    if submission is None:
        await _count(request, claims.hall, "invalid_form")
        form_mode = rules.OFFER_SUPPLEMENTARY if kind == forms.SUPPLEMENTARY else rules.OFFER_FOLLOWUP
        if form_mode != mode and mode in (rules.OFFER_SUPPLEMENTARY, rules.OFFER_FOLLOWUP):
            form_mode = mode
        return await _form_page(request, view, claims, key, state, form_mode, due, status=422, errors=errors,
                                nonce=fields["nonce"][0])
    contact = None
    if submission.has_contact and page.keyring is not None:
        contact = (page.keyring.seal(submission.name, aad(claims.hall, claims.service, kind, "name"))
                   if submission.name else None,
                   page.keyring.seal(submission.phone, aad(claims.hall, claims.service, kind, "phone"))
                   if submission.phone else None,
                   page.keyring.current)
    result = await store.phone_submit(PhoneSubmission(claims.hall, claims.service, claims.window, claims.exp,
                                                      submission, view.lang, nonce, contact))
    await _count(request, claims.hall, {rules.STORE: f"posted_{kind}"}.get(result.outcome, result.outcome))
    if result.outcome in (rules.STORE, rules.REPEAT):
        stored_kind = next((r.kind for r in result.state.records.values() if r.nonce == nonce), kind)
        return RedirectResponse(view.url(lang=view.lang, sent=stored_kind), status_code=303,
                                headers=SECURITY_HEADERS)
    if result.outcome == rules.OVERALL_EXISTS and not result.state.followed:
        view.values.pop("score", None)
        return await _form_page(request, view, claims, key, result.state, rules.OFFER_FOLLOWUP, due, status=409,
                                notice=view.t("notice.overall_exists"))
    if result.outcome == rules.TOO_LATE:
        return _message(view, rules.CLOSED, result.state, due)
    if result.outcome == rules.OVERALL_EXISTS:  # and the service has its follow-up: nothing more to give
        return _message(view, rules.DONE, result.state, due)
    return RedirectResponse(view.url(lang=view.lang), status_code=303, headers=SECURITY_HEADERS)
