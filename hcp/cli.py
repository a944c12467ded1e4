"""The `hcp` command: one entry point for every part of haochaping.

Each subcommand's module is imported only when that subcommand runs, so `hcp --help` is instant
and a hub machine does not need the simulator's pieces.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module with add_arguments(parser) and run_from_args(args) -> int | None, one-line help)
SUBCOMMANDS = {
    "hub": ("hub.server", "run the regional hub (HTTP API on SQLite): ingest, ratings, devices"),
    "gateway": ("gateway.service", "run a hall gateway: MQTT to devices, queue webhook, outbox to the hub"),
    "device": ("simulator.device_cli", "run one real firmware device under MicroPython; press its buttons from the keyboard"),
    "demo": ("simulator.demo", "run a whole simulated hall end to end: broker, hub, gateway, real firmware devices, citizens"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hcp",
        description="haochaping: counter rating devices, hall gateways and the regional hub for "
                    "government-service 好差评 ratings.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module_name)
        # Arguments are added lazily (below) so only the chosen module is imported.
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] not in SUBCOMMANDS:
        parser.parse_args(argv)  # prints help or an error for unknown commands
        parser.print_help()
        return 2
    name = argv[0]
    module_name, help_text = SUBCOMMANDS[name]
    module = importlib.import_module(module_name)
    sub = argparse.ArgumentParser(prog=f"hcp {name}", description=help_text)
    module.add_arguments(sub)
    args = sub.parse_args(argv[1:])
    result = module.run_from_args(args)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
