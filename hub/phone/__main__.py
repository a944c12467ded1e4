"""`python -m hub.phone keygen`: a line for the phone key file (a new random key).
`python -m hub.phone rekey --key-file F [--db PATH | --db-url URL]`: seal every stored name and
number again with the key file's first key (docs/phone.md, "Keys"); the hub may keep running.

Exit status: 0 done; 1 a stored value cannot be opened with the keys in the file; 2 bad usage
(an unusable key file)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from .crypto import KeyFileError, Keyring, SealError, new_key_line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hub.phone", description=__doc__.split("\n\n")[0])
    actions = parser.add_subparsers(dest="action", required=True)
    actions.add_parser("keygen", help="print a new key line for the phone key file")
    rekey = actions.add_parser("rekey", help="seal stored contacts again with the first key of the file")
    rekey.add_argument("--key-file", type=Path, required=True)
    rekey.add_argument("--db", type=Path, help="the hub's SQLite file (default: the hub's setting)")
    rekey.add_argument("--db-url", help="the hub's PostgreSQL URL instead")
    args = parser.parse_args(argv)
    if args.action == "keygen":
        print(new_key_line())
        return 0
    try:
        keyring = Keyring.load(args.key_file)
    except KeyFileError as exc:
        print(f"hub.phone rekey: {exc}", file=sys.stderr)
        return 2
    from ..config import HubSettings
    from ..store import open_store
    from .contacts import rekey as reseal_all
    overrides: dict = {}
    if args.db is not None:
        overrides.update(db_path=args.db, db_url="")
    if args.db_url:
        overrides["db_url"] = args.db_url

    async def run() -> int:
        store = await open_store(HubSettings(**overrides))
        try:
            done = await reseal_all(store, keyring)
            keys = await store.phone_contact_keys()
        finally:
            await store.close()
        print(f"sealed again with {keyring.current}: {done}; contacts per key: "
              + (", ".join(f"{kid} {n}" for kid, n in keys.items()) or "none"))
        return 0
    try:
        return asyncio.run(run())
    except SealError as exc:
        print(f"hub.phone rekey: a stored contact cannot be opened: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
