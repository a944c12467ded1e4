"""`hcp hub users …`: accounts from the command line, on the hub's database (SQLite file or
PostgreSQL URL, as `hcp hub` takes them). The way to the first account of a fresh hub:

    hcp hub users add --db var/hub.sqlite3 --login wang --name 王芳 --role operator
    hcp hub users list --db var/hub.sqlite3
    hcp hub users disable --db var/hub.sqlite3 wang
    hcp hub users reset-password --db var/hub.sqlite3 wang

A password is read from the terminal (twice), or one line from stdin with --password-stdin, or,
with --generate (or when stdin is not a terminal and --password-stdin is not given), generated and
printed once. Works while the hub runs. Exit status 0 done, 1 refused (taken name, no such user,
bad field), 2 bad options or settings.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from typing import TextIO

from ..config import HubSettings
from ..store import HubStore, open_store
from . import users
from .model import Role
from .store import Accounts

BY = "cli"  # the audit log's login for what the command line does


def _database_options(parser: argparse.ArgumentParser, default: object = None) -> None:
    database = parser.add_mutually_exclusive_group()
    database.add_argument("--db", dest="db_path", metavar="PATH", default=default,
                          help="SQLite file (HCP_HUB_DB_PATH, default var/hub.sqlite3)")
    database.add_argument("--db-url", metavar="URL", default=default, help="PostgreSQL URL (HCP_HUB_DB_URL)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _database_options(parser)
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    add = sub.add_parser("add", help="create an account")
    add.add_argument("--login", required=True, help="login name: ASCII letters, digits, _ . @ -")
    add.add_argument("--name", required=True, help="the name pages show")
    add.add_argument("--role", required=True, choices=[str(r) for r in Role])
    add.add_argument("--region", help="scope: only this region")
    add.add_argument("--hall", help="scope: only this hall")
    add.add_argument("--unit", help="scope: only this unit (required for a handler: the `unit` services carry)")
    _password_options(add)

    listing = sub.add_parser("list", help="list the accounts")
    listing.add_argument("--role", choices=[str(r) for r in Role])

    for name, text in (("disable", "disable an account (its sessions end now)"),
                       ("enable", "enable a disabled account again")):
        p = sub.add_parser(name, help=text)
        p.add_argument("login")

    reset = sub.add_parser("reset-password", help="set a new password (the account's sessions end)")
    reset.add_argument("login")
    _password_options(reset)
    for action in sub.choices.values():  # `users add --db …` as well as `users --db … add`
        _database_options(action, default=argparse.SUPPRESS)


def _password_options(parser: argparse.ArgumentParser) -> None:
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--password-stdin", action="store_true", help="read the password as one line from stdin")
    how.add_argument("--generate", action="store_true", help="generate a password and print it once")


def _settings(args: argparse.Namespace) -> HubSettings:
    if args.db_path is not None and args.db_url is not None:
        raise ValueError("give the database once: --db PATH or --db-url URL")
    given = {}
    if args.db_path is not None:
        given = {"db_path": args.db_path, "db_url": ""}
    elif args.db_url is not None:
        given = {"db_url": args.db_url}
    return HubSettings(**given)


def _read_password(args: argparse.Namespace, stdin: TextIO) -> str | None:
    """The password the options ask for; None: generate one."""
    if args.generate:
        return None
    if args.password_stdin:
        return stdin.readline().rstrip("\r\n")
    if not stdin.isatty():
        return None
    first = getpass.getpass("password: ")
    if first != getpass.getpass("again: "):
        raise ValueError("the two passwords differ")
    return first


def _show(user) -> str:
    scope = " ".join(f"{k}={v}" for k, v in (("region", user.scope.region), ("hall", user.scope.hall),
                                            ("unit", user.scope.unit)) if v) or "whole hub"
    state = "disabled" if user.disabled else "active"
    return f"{user.login}\t{user.role}\t{user.name}\t{scope}\t{state}"


async def _run(store: HubStore, args: argparse.Namespace, stdin: TextIO, out: TextIO) -> int:
    if args.action == "list":
        for user in await Accounts(store).users(role=args.role):
            print(_show(user), file=out)
        return 0
    if args.action in ("disable", "enable"):
        user = await users.set_disabled(store, args.login, args.action == "disable", by=BY)
        if user is None:
            print(f"hub users: no user {args.login}", file=sys.stderr)
            return 1
        print(_show(user), file=out)
        return 0
    password = _read_password(args, stdin)
    if args.action == "add":
        user, generated = await users.create_user(
            store, login=args.login, name=args.name, role=args.role, region=args.region, hall=args.hall,
            unit=args.unit, password=password, by=BY)
    else:
        done = await users.reset_password(store, args.login, password, by=BY)
        if done is None:
            print(f"hub users: no user {args.login}", file=sys.stderr)
            return 1
        user, generated = done
    print(_show(user), file=out)
    if generated is not None:
        print(f"password: {generated}   (shown once; give it to {user.name} in person)", file=out)
    return 0


async def _main(settings: HubSettings, args: argparse.Namespace, stdin: TextIO, out: TextIO) -> int:
    store = await open_store(settings)
    try:
        return await _run(store, args, stdin, out)
    finally:
        await store.close()


def run_from_args(args: argparse.Namespace, stdin: TextIO | None = None, out: TextIO | None = None) -> int:
    try:
        settings = _settings(args)
    except ValueError as exc:
        print(f"hub users: bad settings: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_main(settings, args, stdin or sys.stdin, out or sys.stdout))
    except users.UserExists as exc:
        print(f"hub users: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"hub users: {exc}", file=sys.stderr)
        return 1
