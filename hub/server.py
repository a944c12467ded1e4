"""Run the hub under uvicorn: `serve(settings)`, and the command line of `python -m hub` (and of
`hcp hub`, which calls `add_arguments` and `run_from_args`)."""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import threading

import uvicorn

from .app import create_app
from .config import HubSettings

GRACEFUL_SHUTDOWN_S = 10  # lets a running batch commit on Ctrl-C / SIGTERM; gateways retry anyway
BACKLOG = 2048  # uvicorn's default: connections wait here while the store opens


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The hub's options. Unset ones fall back to `HCP_HUB_*` variables, then to the defaults."""
    database = parser.add_mutually_exclusive_group()
    database.add_argument("--db", dest="db_path", metavar="PATH",
                          help="SQLite file (HCP_HUB_DB_PATH, default var/hub.sqlite3)")
    database.add_argument("--db-url", metavar="URL",
                          help="PostgreSQL instead of SQLite: postgresql://user@host:port/db "
                               "(HCP_HUB_DB_URL; prefer the variable if the URL holds a password)")
    parser.add_argument("--host", help="address to listen on (HCP_HUB_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port; 0 picks a free one (HCP_HUB_PORT, default 8700)")
    parser.add_argument("--admin-token", help="admin token; prefer HCP_HUB_ADMIN_TOKEN, which other "
                                              "users cannot read from the process list")
    parser.add_argument("--public-url", help="base URL phones reach (HCP_HUB_PUBLIC_URL)")
    parser.add_argument("--log-level", default="warning",
                        choices=["critical", "error", "warning", "info", "debug"],
                        help="uvicorn's log level on stderr (default warning)")


def settings_from_args(args: argparse.Namespace) -> HubSettings:
    given = {name: getattr(args, name, None)
             for name in ("db_path", "db_url", "host", "port", "admin_token", "public_url")}
    if given["db_path"] is not None and given["db_url"] is None:
        given["db_url"] = ""  # --db picks SQLite, whatever HCP_HUB_DB_URL says
    return HubSettings(**{name: value for name, value in given.items() if value is not None})


def run_from_args(args: argparse.Namespace) -> int:
    """Run until Ctrl-C or SIGTERM; the exit status: 0 after a clean stop, 1 if the hub could not
    start, 2 for bad settings."""
    try:
        settings = settings_from_args(args)
    except ValueError as exc:
        print(f"hub: bad settings: {exc}", file=sys.stderr)
        return 2
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler) if in_main else None
    try:
        return 0 if serve(settings, log_level=getattr(args, "log_level", "warning")) else 1
    except KeyboardInterrupt:  # uvicorn re-raises the signal once it has shut down cleanly
        return 0
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)


def serve(settings: HubSettings, *, log_level: str = "warning") -> bool:
    """Serve until stopped. Prints `hub listening on URL (db PATH-OR-URL)` once requests can be served.

    False if the hub could not start (the reason is on stderr).
    """
    try:
        sock = listen_socket(settings.host, settings.port)
    except OSError as exc:
        print(f"hub: cannot listen on {settings.host}:{settings.port}: {exc}", file=sys.stderr)
        return False
    port = sock.getsockname()[1]
    if settings.public_url == settings.derived_url():  # derived, so follow a port picked by the OS
        settings = settings.model_copy(update={"port": port, "public_url": settings.derived_url(port)})
    if not settings.admin_configured:
        print("hub: warning: no admin token (HCP_HUB_ADMIN_TOKEN or --admin-token): "
              "admin endpoints answer 503", file=sys.stderr)

    def ready() -> None:
        print(f"hub listening on {settings.derived_url(port)} (db {settings.database_label})", flush=True)

    app = create_app(settings, on_ready=ready)
    config = uvicorn.Config(app, lifespan="on", log_level=log_level, access_log=False,
                            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)
    server = uvicorn.Server(config)
    with sock:
        try:
            server.run(sockets=[sock])
        except SystemExit:  # uvicorn exits when the app fails to start (it logged why)
            if server.started:
                raise
    return server.started


def listen_socket(host: str, port: int) -> socket.socket:
    """A listening socket, made before the app starts, so the ready line is true when printed."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hub", description="Run the haochaping hub.")
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))
