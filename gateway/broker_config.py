"""The hall's production Mosquitto configuration, generated from the gateway's device registry.

`hcp gateway broker-config --config gateway.json --out DIR` writes three files into DIR:

- `mosquitto.conf`: one listener, no anonymous access, usernames as client ids, persistence on,
  inflight and queue limits sized for the gateway's group commit;
- `passwd`: one account per registered device (username = device id) and one for the gateway, in
  Mosquitto 2.0's own `$7$` format (PBKDF2-SHA512), written here with hashlib so no
  `mosquitto_passwd` binary is needed;
- `acl`: a device may publish only under its own topics and read only its own `ack`/`prompt`/`cmd`;
  the gateway reads every device topic of the hall and writes acks, prompts and commands.

Device passwords are not stored anywhere: each is an HMAC of the device id under the hall's broker
secret (`broker_secret`, else derived from `gateway_key`), so the files can be regenerated from the
registry at any time and provisioning asks for a device's password with `--show-password D07`.
The output depends only on the registry and the settings (salts are derived too), so regenerating
an unchanged hall rewrites nothing. See docs/gateway.md, "Broker security".
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import os
import pwd
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from gateway.config import GatewaySettings, load_settings
from gateway.ingest import GROUP_MAX
from gateway.store import Store
from hcp.protocol import DEVICE_RE, DEVICE_TOPICS, GATEWAY_TOPICS, HALL_RE, TOPIC_PREFIX

PASSWORD_ITERATIONS = 101  # Mosquitto 2.0's own default; the broker pays it at every connect, and
#                            derived passwords carry 128 random bits, so more stretching buys nothing
SALT_BYTES = 12  # as mosquitto_passwd writes them
HASH_BYTES = 64  # SHA-512 output
DEVICE_PASSWORD_HEX = 32  # 128 bits; fits the firmware's mqtt_pass (≤ 64) and types on any console
GATEWAY_PASSWORD_MIN = 12  # the gateway's own password is chosen by a person: refuse a weak one
MAX_INFLIGHT = 2 * GROUP_MAX  # the gateway PUBACKs only after its SQLite COMMIT: with Mosquitto's
#                               default of 20 unacked messages one commit group could hold only 20;
#                               two full groups let the next fill while one commits
MAX_QUEUED = 100_000  # messages held for the gateway's persistent session while it is away
#                       (≤ 1 KiB each: ≤ 100 MB); beyond that the devices keep them in flash
MAX_PACKET = 65536  # far above the contract's 1024-byte payloads, so an oversized one still reaches
#                     the gateway's quarantine as `too_large`; bounds what one client can make us hold
AUTOSAVE_INTERVAL_S = 5  # Mosquitto persistence is a periodic snapshot; devices keep every rating
#                          until the gateway's ack, so the snapshot guards retained status and queues
BROKER_USER = "mosquitto"  # the account Mosquitto drops to when started as root (Debian, Ubuntu)

CONF_NAME, PASSWD_NAME, ACL_NAME = "mosquitto.conf", "passwd", "acl"
_SECRET_LABEL = b"hcp/v1 broker secret"
_PASSWORD_LABEL = b"hcp/v1 broker password\x00"
_SALT_LABEL = b"hcp/v1 broker salt\x00"
_USERNAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # safe in passwd, acl and logs
_MQTT_SPECIAL = {"/": "the MQTT topic level separator", "+": "an MQTT wildcard",
                 "#": "an MQTT wildcard", ":": "the password file's separator"}


class BrokerConfigError(ValueError):
    """Input the broker configuration cannot be made from (a bad id, a missing account)."""


# ---------------------------------------------------------------------------- identities


def check_device_id(device: object) -> str:
    """`device` if it can be a broker username and a topic level; BrokerConfigError says why not.

    The username is the device id and the ACL names topics with it, so a `/` or a wildcard would
    widen what that device may publish or read, and whitespace would split a line of the files.
    """
    if not isinstance(device, str) or not device:
        raise BrokerConfigError(f"device id {device!r}: empty or not a string")
    for char, what in _MQTT_SPECIAL.items():
        if char in device:
            raise BrokerConfigError(f"device id {device!r} contains {char!r}, {what}: as a broker "
                                    f"username and topic level it would reach other devices' topics")
    if any(c.isspace() or not c.isprintable() for c in device):
        raise BrokerConfigError(f"device id {device!r} contains whitespace or a control character")
    if not DEVICE_RE.fullmatch(device):
        raise BrokerConfigError(f"device id {device!r} is not a device id (letters, digits, '_' "
                                f"and '-', starting with a letter or digit, at most 32)")
    return device


def broker_secret(settings: GatewaySettings) -> bytes:
    """The key device passwords are derived from: `broker_secret` if set, else one derived from
    `gateway_key` (so a hall needs no second secret until it wants to rotate passwords alone)."""
    if settings.broker_secret is not None:
        return settings.broker_secret.get_secret_value().encode()
    return hmac.new(settings.gateway_key_bytes, _SECRET_LABEL, hashlib.sha256).digest()


def device_password(secret: bytes, hall: str, device: str) -> str:
    """The broker password of `device` in `hall`: 32 hex characters, the same every time."""
    check_device_id(device)
    msg = _PASSWORD_LABEL + hall.encode() + b"\x00" + device.encode()
    return hmac.new(secret, msg, hashlib.sha256).hexdigest()[:DEVICE_PASSWORD_HEX]


# ---------------------------------------------------------------------------- password file


def hash_password(password: str, salt: bytes, iterations: int = PASSWORD_ITERATIONS) -> str:
    """Mosquitto 2.0's `$7$` password hash: `$7${iterations}${b64 salt}${b64 PBKDF2-SHA512}`."""
    if not password:
        raise BrokerConfigError("empty password")
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, HASH_BYTES)
    return (f"$7${iterations}${base64.b64encode(salt).decode()}$"
            f"{base64.b64encode(digest).decode()}")


def check_password(password: str, encoded: str) -> bool:
    """True if `password` matches a `$7$` hash (ours or mosquitto_passwd's)."""
    parts = encoded.split("$")
    if len(parts) != 5 or parts[:2] != ["", "7"] or not parts[2].isdigit():
        raise BrokerConfigError(f"not a Mosquitto $7$ password hash: {encoded[:20]!r}")
    salt, want = base64.b64decode(parts[3]), base64.b64decode(parts[4])
    got = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, int(parts[2]), len(want))
    return hmac.compare_digest(got, want)


def _salt(secret: bytes, username: str, password: str) -> bytes:
    """A salt derived from the account, so an unchanged registry gives byte-identical files."""
    msg = _SALT_LABEL + username.encode() + b"\x00" + password.encode()
    return hmac.new(secret, msg, hashlib.sha256).digest()[:SALT_BYTES]


# ---------------------------------------------------------------------------- the files


@dataclass(frozen=True)
class Account:
    username: str
    password: str


@dataclass(frozen=True)
class HallBroker:
    """Everything the three files are made of. Build it with `plan()`."""

    hall: str
    gateway: Account
    devices: tuple[Account, ...]  # sorted by device id
    secret: bytes
    port: int
    bind: str | None  # None: every interface (the devices are on the hall LAN)

    def password_file(self) -> str:
        lines = [f"{a.username}:"
                 f"{hash_password(a.password, _salt(self.secret, a.username, a.password))}"
                 for a in (self.gateway, *self.devices)]
        return "\n".join(lines) + "\n"

    def acl_file(self) -> str:
        prefix = f"{TOPIC_PREFIX}/{self.hall}"
        out = [f"# Mosquitto ACL for hall {self.hall}, generated by `hcp gateway broker-config` from",
               "# the gateway's registry. Do not edit: regenerate, then send the broker SIGHUP.",
               "# Nothing precedes the first `user` line: anonymous clients get no topic at all.",
               "", f"user {self.gateway.username}"]
        out += [f"topic read {prefix}/+/{s}" for s in DEVICE_TOPICS]
        out += [f"topic write {prefix}/+/{s}" for s in GATEWAY_TOPICS]
        for a in self.devices:
            out += ["", f"user {a.username}"]
            out += [f"topic write {prefix}/{a.username}/{s}" for s in DEVICE_TOPICS]
            out += [f"topic read {prefix}/{a.username}/{s}" for s in GATEWAY_TOPICS]
        return "\n".join(out) + "\n"

    def mosquitto_conf(self, out_dir: Path, persistence_dir: Path) -> str:
        listener = f"listener {self.port}" + (f" {self.bind}" if self.bind else "")
        return "\n".join([
            f"# Mosquitto for hall {self.hall}: {len(self.devices)} devices and the gateway "
            f"account {self.gateway.username}.",
            f"# Generated by `hcp gateway broker-config`: run `mosquitto -c {out_dir / CONF_NAME}`.",
            listener,
            "allow_anonymous false",
            f"password_file {out_dir / PASSWD_NAME}",
            f"acl_file {out_dir / ACL_NAME}",
            "# a client id is its username: nobody can take over another client's session",
            "use_username_as_clientid true",
            "persistence true",
            f"persistence_location {persistence_dir}/",
            f"autosave_interval {AUTOSAVE_INTERVAL_S}",
            "# the gateway PUBACKs after its SQLite commit: let a whole commit group be in flight",
            f"max_inflight_messages {MAX_INFLIGHT}",
            f"max_queued_messages {MAX_QUEUED}",
            f"max_packet_size {MAX_PACKET}",
            "set_tcp_nodelay true",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "connection_messages true",
        ]) + "\n"


def plan(settings: GatewaySettings, devices: list[str], port: int | None = None,
         bind: str | None = None) -> HallBroker:
    """The hall's broker from its settings and registered device ids; BrokerConfigError if the
    gateway has no broker account in its settings or an id cannot be a username."""
    if not HALL_RE.fullmatch(settings.hall):
        raise BrokerConfigError(f"hall id {settings.hall!r} cannot be a topic level")
    user, password = settings.broker_username, settings.broker_password
    if user is None or password is None:
        raise BrokerConfigError(
            "the gateway needs its own broker account: set broker_username (e.g. "
            f'"gw-{settings.hall}") and broker_password in its settings, then generate again; the '
            "gateway logs in with them")
    if not _USERNAME_RE.fullmatch(user):
        raise BrokerConfigError(f"broker_username {user!r}: use letters, digits, '_', '.' and '-' "
                                f"(at most 64, no spaces or ':')")
    if len(password.get_secret_value()) < GATEWAY_PASSWORD_MIN:
        raise BrokerConfigError(f"broker_password is shorter than {GATEWAY_PASSWORD_MIN} characters")
    ids = sorted({check_device_id(d) for d in devices})
    if user in ids:
        raise BrokerConfigError(f"broker_username {user!r} is also a device id: the gateway's "
                                f"account must differ from every device's")
    secret = broker_secret(settings)
    return HallBroker(
        hall=settings.hall, gateway=Account(user, password.get_secret_value()),
        devices=tuple(Account(d, device_password(secret, settings.hall, d)) for d in ids),
        secret=secret, port=settings.broker_port if port is None else port, bind=bind)


# ---------------------------------------------------------------------------- the registry


@dataclass(frozen=True)
class Registry:
    registered: list[str]  # in the gateway's file (window set) or seeded by its settings
    unregistered: list[str]  # seen on MQTT but never registered: no account until they are


async def read_registry(settings: GatewaySettings) -> Registry:
    """Registered devices: the `devices` table of the gateway's file plus the settings' seeds (the
    gateway registers those at every start; its file may not exist yet). Never creates the file."""
    registered = {seed.device for seed in settings.devices}
    unregistered: set[str] = set()
    retired: set[str] = set()  # replaced: no account, even if the settings still seed it
    if settings.db_path.exists():
        store = await Store.open(settings.db_path)
        try:
            async with store.read() as tx:
                for row in await tx.devices():
                    if row.retired_at is not None:
                        retired.add(row.device)
                    else:
                        (registered if row.registered else unregistered).add(row.device)
        finally:
            await store.close()
    return Registry(sorted(registered - retired), sorted(unregistered - registered))


# ---------------------------------------------------------------------------- writing


def default_owner() -> str | None:
    """`mosquitto` when run as root and that account exists: Mosquitto started as root drops to it
    before it reads the password and ACL files, which are 0600. Otherwise the files stay ours."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(BROKER_USER)
    except KeyError:
        return None
    return BROKER_USER


def _ids(owner: str | None) -> tuple[int, int] | None:
    if owner is None:
        return None
    try:
        entry = pwd.getpwnam(owner)
    except KeyError:
        raise BrokerConfigError(f"--owner {owner!r}: no such user") from None
    return entry.pw_uid, entry.pw_gid


def write_atomic(path: Path, data: bytes, mode: int, owner: tuple[int, int] | None = None) -> bool:
    """Replace `path` with `data` (temp file, fsync, rename, fsync the directory): a crash leaves
    the old or the new file, never half of one, and a secret is never readable by others, not even
    for a moment. False (and nothing written) if the file already holds exactly `data` with `mode`
    and owner."""
    try:
        st = path.stat()
        if (path.read_bytes() == data and st.st_mode & 0o777 == mode
                and (owner is None or (st.st_uid, st.st_gid) == owner)):
            return False
    except FileNotFoundError:
        pass
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)  # left by a crash
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have taken bits that the broker needs
        if owner is not None:
            os.fchown(fd, *owner)
        os.write(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return True


def write_files(broker: HallBroker, out_dir: Path, persistence_dir: Path | None = None,
                owner: str | None = None) -> dict[str, bool]:
    """Write the three files into `out_dir` and make the persistence directory; which files changed.

    Secrets (`passwd`) and the hall's device list (`acl`) are 0600; `owner` (e.g. `mosquitto`) owns
    them and the persistence directory, which Mosquitto writes."""
    out_dir = out_dir.resolve()
    persistence_dir = (persistence_dir or out_dir / "data").resolve()
    ids = _ids(owner)
    out_dir.mkdir(parents=True, exist_ok=True)
    persistence_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if ids is not None:
        os.chown(persistence_dir, *ids)
    return {
        PASSWD_NAME: write_atomic(out_dir / PASSWD_NAME, broker.password_file().encode(), 0o600, ids),
        ACL_NAME: write_atomic(out_dir / ACL_NAME, broker.acl_file().encode(), 0o600, ids),
        CONF_NAME: write_atomic(out_dir / CONF_NAME,
                                broker.mosquitto_conf(out_dir, persistence_dir).encode(), 0o644),
    }


# ---------------------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `hcp gateway broker-config`."""
    parser.add_argument("--config", type=Path, help="the gateway's JSON settings file")
    parser.add_argument("--data-dir", type=Path, help="the gateway's data directory (its registry)")
    parser.add_argument("--out", type=Path, help="directory for mosquitto.conf, passwd and acl")
    parser.add_argument("--port", type=int, help="listener port (default: the settings' broker_port)")
    parser.add_argument("--bind", help="listener address (default: every interface)")
    parser.add_argument("--persistence-dir", type=Path, help="Mosquitto's data (default: OUT/data)")
    parser.add_argument("--owner", default=default_owner(),
                        help="user owning passwd, acl and the persistence directory "
                             "(default: 'mosquitto' when run as root, else the current user)")
    parser.add_argument("--show-password", metavar="DEVICE",
                        help="print DEVICE's broker password (for provisioning) and write nothing")


def run_from_args(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.config, data_dir=args.data_dir)
    except (OSError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        print(f"broker-config: bad settings: {exc}", file=sys.stderr)
        return 2
    try:
        registry = asyncio.run(read_registry(settings))
        if args.show_password is not None:
            return _show_password(settings, registry, args.show_password)
        if args.out is None:
            print("broker-config: --out DIR is required (or --show-password DEVICE)", file=sys.stderr)
            return 2
        if args.port is not None and not 1 <= args.port <= 65535:
            raise BrokerConfigError(f"--port {args.port}: not a TCP port")
        broker = plan(settings, registry.registered, args.port, args.bind)
        changed = write_files(broker, args.out, args.persistence_dir, args.owner)
    except BrokerConfigError as exc:
        print(f"broker-config: {exc}", file=sys.stderr)
        return 2
    except (OSError, RuntimeError) as exc:  # unwritable DIR, a newer gateway schema, ...
        print(f"broker-config: {exc}", file=sys.stderr)
        return 1
    out = args.out.resolve()
    where = f"{broker.bind or '*'}:{broker.port}"
    print(f"broker config for hall {settings.hall}: {len(broker.devices)} devices, gateway account "
          f"{broker.gateway.username}, listener {where}")
    for name, did in changed.items():
        print(f"  {out / name}  {'written' if did else 'unchanged'}")
    print(f"start: mosquitto -c {out / CONF_NAME}   after registering devices: run this again, "
          f"then send the broker SIGHUP")
    if registry.unregistered:
        print(f"broker-config: no account for devices seen on MQTT but not registered: "
              f"{', '.join(registry.unregistered)}", file=sys.stderr)
    return 0


def _show_password(settings: GatewaySettings, registry: Registry, device: str) -> int:
    password = device_password(broker_secret(settings), settings.hall, device)
    if device not in registry.registered:
        print(f"broker-config: {device} is not registered at this gateway yet: the password works "
              f"once it is registered and the broker config generated again", file=sys.stderr)
    print(password)
    return 0
