"""`python -m gateway --config FILE`: run one hall's gateway until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import sys

from gateway.service import add_arguments, run_from_args


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway",
                                     description="haochaping hall gateway (MQTT devices <-> hub)")
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
