"""`hcp gateway dead-letters`: list the outbox rows the hub rejected, and re-send them.

It talks to the running gateway's admin API (`GET /api/v1/outbox/dead`, `POST
/api/v1/outbox/dead/resend`, admin token), never to its file: a re-queue must go through the
gateway's own store lock and wake its forwarder. The address and token come from `--url`/`--token`
(or `$HCP_ADMIN_TOKEN`), else from the settings file (`--config`).

Exit status: 0 done; 1 the gateway did not answer or refused (wrong token), or some `--resend` seqs
were not dead letters; 2 bad options, bad settings, or input the gateway answered 400.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from gateway.dead_letters import KINDS, LIST_DEFAULT, LIST_MAX, RESEND_SEQS_MAX
from gateway.status_cli import DEFAULT_URL
from gateway.status_views import DEAD_HINT, when

HTTP_TIMEOUT_S = 120.0  # a re-queue of a million rows by filter runs in chunks: seconds, not hours
HEADER = ["SEQ", "KIND", "KEY", "REASON", "DEAD SINCE", "ATTEMPTS", "RE-SENT"]


class CliError(Exception):
    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="the gateway's JSON settings: address, admin token")
    parser.add_argument("--url", help=f"the gateway's base URL (default: from --config, else {DEFAULT_URL})")
    parser.add_argument("--token", help="the admin token (default: $HCP_ADMIN_TOKEN, or --config); "
                        "one that begins with - is written --token=VALUE")
    parser.add_argument("--reason", help="only dead letters with this hub reason (e.g. unknown_device)")
    parser.add_argument("--kind", choices=KINDS, help="only dead letters of this kind")
    parser.add_argument("--limit", type=int, default=LIST_DEFAULT,
                        help=f"rows to list, newest first (default {LIST_DEFAULT}, at most {LIST_MAX})")
    parser.add_argument("--before", type=int, metavar="SEQ", help="list rows older than this seq")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--resend", type=int, nargs="+", metavar="SEQ",
                      help="re-send these dead letters (back to pending, in seq order)")
    what.add_argument("--resend-all", action="store_true",
                      help="re-send every dead letter matching --reason/--kind (all of them without)")
    parser.add_argument("--by", help="who re-sends, kept with each row (default: user@host)")
    parser.add_argument("--json", action="store_true", help="print the gateway's answer as JSON")


def run_from_args(args: argparse.Namespace) -> int:
    try:
        url, token = _target(args)
        if args.resend is not None:
            if args.reason is not None or args.kind is not None:
                raise CliError("--resend names the seqs; --reason/--kind go with --resend-all", 2)
            if len(args.resend) > RESEND_SEQS_MAX:
                raise CliError(f"--resend takes at most {RESEND_SEQS_MAX} seqs at a time", 2)
            answer = _call(url, token, "POST", {"seqs": args.resend, "by": _by(args)})
        elif args.resend_all:
            body: dict[str, Any] = {"by": _by(args)}
            body.update({k: v for k, v in (("reason", args.reason), ("kind", args.kind)) if v})
            if "reason" not in body and "kind" not in body:
                body["all"] = True
            answer = _call(url, token, "POST", body)
        else:
            params = {k: v for k, v in (("reason", args.reason), ("kind", args.kind),
                                        ("limit", args.limit), ("before", args.before))
                      if v is not None}
            answer = _call(url, token, "GET", params)
    except CliError as err:
        print(f"hcp gateway dead-letters: {err}", file=sys.stderr)
        return err.code
    if args.json:
        print(json.dumps(answer, ensure_ascii=False, indent=1))
    elif "items" in answer:
        sys.stdout.write(render_list(answer))
    else:
        print(_resend_text(answer))
    return 1 if answer.get("not_dead") else 0


def _target(args: argparse.Namespace) -> tuple[str, str]:
    url, token = args.url, args.token or os.environ.get("HCP_ADMIN_TOKEN")
    if args.config is not None and (url is None or token is None):
        from gateway.config import load_settings

        try:
            settings = load_settings(args.config)
        except (OSError, ValueError) as exc:
            raise CliError(f"bad settings {args.config}: {exc}", 2) from None
        host = "127.0.0.1" if settings.http_host in ("0.0.0.0", "::", "") else settings.http_host
        url = url or f"http://{host}:{settings.http_port}"
        token = token or settings.admin_token.get_secret_value()
    if not token:
        raise CliError("the admin API needs a token: --token, $HCP_ADMIN_TOKEN or --config", 2)
    return (url or DEFAULT_URL).rstrip("/"), token


def _by(args: argparse.Namespace) -> str:
    if args.by:
        return args.by
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "operator"
    return f"{user}@{socket.gethostname()}"[:64]


def _call(url: str, token: str, method: str, data: dict[str, Any]) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    try:
        if method == "GET":
            resp = httpx.get(f"{url}/api/v1/outbox/dead", params=data, headers=headers,
                             timeout=HTTP_TIMEOUT_S)
        else:
            resp = httpx.post(f"{url}/api/v1/outbox/dead/resend", json=data, headers=headers,
                              timeout=HTTP_TIMEOUT_S)
    except httpx.HTTPError as exc:
        raise CliError(f"the gateway at {url} did not answer ({exc})", 1) from None
    try:
        body = resp.json()
    except ValueError:
        body = {}
    if resp.status_code == 401:
        raise CliError(f"the gateway at {url} refused the admin token", 1)
    if resp.status_code == 400:
        raise CliError(f"the gateway refused the request: {body.get('error', resp.text[:200])}", 2)
    if resp.status_code != 200 or not isinstance(body, dict):
        raise CliError(f"the gateway answered {resp.status_code}: {resp.text[:200]}", 1)
    return body


def render_list(answer: dict[str, Any]) -> str:
    """The readable table: counts by reason, then one line per dead letter, newest first."""
    now = time.time()
    by_reason = answer.get("by_reason") or {}
    counts = ", ".join(f"{r or '(none)'} {n}" for r, n in
                       sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0])))
    lines = [f"dead letters: {answer.get('total', 0)}" + (f" ({counts})" if counts else "")]
    items = answer["items"]
    if items:
        rows = [[str(i["seq"]), i["kind"], i["key"], i["reason"] or "-", when(i["dead_at"], now),
                 str(i["attempts"]),
                 f"{i['requeues']}x, last {when(i['requeued_at'], now)} by {i['requeued_by']}"
                 if i["requeues"] else "-"] for i in items]
        cells = [HEADER] + [[" ".join(c.split()) for c in r] for r in rows]
        widths = [max(len(r[k]) for r in cells) for k in range(len(HEADER))]
        lines += ["  ".join(c.ljust(widths[k]) for k, c in enumerate(r)).rstrip() for r in cells]
    else:
        lines.append("(none match)" if answer.get("total") else "(none)")
    if answer.get("next_before") is not None:
        lines.append(f"more: --before {answer['next_before']}")
    if items:
        lines.append(DEAD_HINT)
    return "\n".join(lines) + "\n"


def _resend_text(answer: dict[str, Any]) -> str:
    text = f"re-queued {answer['requeued']} dead letter(s)"
    if answer.get("seqs"):
        text += ": seq " + ", ".join(str(s) for s in answer["seqs"])
    if answer.get("not_dead"):
        text += "; not dead letters (unknown, pending or already sent): " + ", ".join(
            str(s) for s in answer["not_dead"])
    return text
