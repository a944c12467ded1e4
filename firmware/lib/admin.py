"""What a device does rarely: start-up, provisioning, and the gateway's and the console's commands.

Cold code (docs/firmware.md, "Memory"): device.py and console.py run these functions with
`flashfs.run_cold` when one of these things happens, so on a small heap this code is not resident
while the device counts presses. Everything here acts on a `device.Device` and is synchronous: what
takes time (blinking, the reboot, publishing a reply) is left to the device's own loops.
"""

import wire
from flashfs import join, read_json, run_cold, write_atomic
from hmac_sha256 import HMAC

# Config keys whose change needs a new MQTT connection (identity, broker, credentials).
RECONNECT_KEYS = ("dev", "hall", "broker_host", "broker_port", "mqtt_user", "mqtt_pass", "keepalive_s",
                  "wifi_ssid", "wifi_pass")


def start(dev):
    """Boot: report config problems, put the config into effect, count the boot, open the outbox
    journal, load the key."""
    for problem in dev.config_errors:
        dev.error(problem)
    configure(dev)
    path = join(dev.board.flash_root, "boot.json")
    obj, _problem = read_json(path)
    boot = obj.get("boot", 0) + 1 if isinstance(obj, dict) and isinstance(obj.get("boot"), int) else 1
    write_atomic(path, wire.compact({"boot": boot}))
    dev.boot = boot
    dev.outbox.load()
    if dev.outbox.repaired:
        dev.error("outbox journal repaired after a torn write")
    load_key(dev)


def configure(dev):
    """Put the config into effect (at start and after every change)."""
    cfg = dev.config
    dev.ui.set_lang(cfg["lang"])
    dev.outbox.capacity = cfg["outbox_max"]
    if dev.buttons is not None:
        dev.buttons.stuck_ms = cfg["stuck_ms"]
    if hasattr(dev.board, "set_wifi"):
        dev.board.set_wifi(cfg["wifi_ssid"], cfg["wifi_pass"])


def load_key(dev):
    try:
        with open(join(dev.board.flash_root, "key.bin"), "rb") as f:
            key = f.read()
    except OSError:
        return False
    if len(key) != 32:
        dev.error("key file is not 32 bytes")
        return False
    dev.kid = wire.key_id(key)
    dev.signer = HMAC(key)
    return True


def store_key(dev, key):
    """Provisioning: write the device key (write-only) and use it from now on. -> key id."""
    if len(key) != 32:
        raise ValueError("the key must be 32 bytes")
    write_atomic(join(dev.board.flash_root, "key.bin"), key)
    load_key(dev)
    dev.show_idle()
    return dev.kid


def info(dev, full=False):
    """What provisioning and the `info` command may know (never the key or secrets)."""
    cfg = dev.config
    res = {"dev": cfg["dev"], "hall": cfg["hall"], "window": cfg["window"], "fw": dev.firmware,
           "boot": dev.boot, "kid": dev.kid, "lang": cfg["lang"]}
    if full:
        res.update({"proto": 1, "board": dev.board.name, "provisioned": dev.ready(),
                    "config": run_cold("config", "public", cfg), "outbox": dev.outbox.depth(),
                    "n": dev.outbox.last_n, "errors": dev.config_errors})
    return res


def apply_config(dev, changes, reconnect=True):
    """Validate and store config changes (all or none), then put them into effect. -> changed keys.
    With reconnect=False the caller calls `reconnect_if_needed` itself (after replying)."""
    dev.config, changed = run_cold("config", "update", dev.board.flash_root, dev.config, changes)
    configure(dev)
    if reconnect:
        reconnect_if_needed(dev, changed)
    if not dev.ui_until:
        dev.show_idle()
    return changed


def reconnect_if_needed(dev, changed):
    if dev.mqtt is not None and any(k in RECONNECT_KEYS for k in changed):
        dev.mqtt.lost.set()  # the connection loop closes it and connects with the new values


def identify(dev, secs):
    """Blink every LED for `secs` seconds (the main loop does), so a technician finds this device."""
    if isinstance(secs, bool) or not isinstance(secs, int) or not 1 <= secs <= 300:
        raise ValueError("s: not an integer in 1..300")
    dev.identify_until = dev.ms() + 1000 * secs


def request_reboot(dev):
    """The main loop reboots in 200 ms, once the reply is out, after a clean MQTT disconnect."""
    dev.reboot_at = dev.ms() + 200


def decode_cmd(raw):
    """A `cmd` payload (docs/protocol.md) -> (id, op, args dict); raises wire.WireError.
    Here, not in wire.py, because only this cold code needs it."""
    obj = wire.decode_object(raw)
    cid = obj.get("id")
    if not isinstance(cid, str) or not 0 < len(cid) <= 64:
        raise wire.WireError("bad_field:id")
    op = obj.get("op")
    if not isinstance(op, str):
        raise wire.WireError("bad_field:op")
    args = obj.get("args", {})
    if not isinstance(args, dict):
        raise wire.WireError("bad_field:args")
    return cid, op, args


def command(dev, raw):
    """A `cmd` message from the gateway (docs/protocol.md): run it.
    -> (reply payload, changed config keys) for the device to publish. A bad message raises
    wire.WireError, which the device counts and reports like any other."""
    cid, op, args = decode_cmd(raw)
    ok, res, changed = True, {}, []
    try:
        if op == "info":
            res = info(dev)
        elif op == "identify":
            identify(dev, args.get("s", 10))
        elif op == "time":
            epoch = args.get("epoch")
            if isinstance(epoch, bool) or not isinstance(epoch, (int, float)) or epoch < 1.6e9:
                raise ValueError("epoch: not a plausible Unix time")
            dev.wall_offset = int(epoch * 1000) - dev.ms()
        elif op == "config":
            changes = args.get("set")
            if not isinstance(changes, dict):
                raise ValueError("set: not an object")
            changed = apply_config(dev, changes, reconnect=False)  # reconnect after the reply
            res = {"changed": changed}
        elif op == "reboot":
            request_reboot(dev)
        else:
            raise ValueError("unknown op " + op)
    except (ValueError, OSError) as exc:
        ok, res = False, str(exc)
        dev.counts["badmsg"] += 1
    reply = {"v": 1, "id": cid, "ok": ok}
    reply["res" if ok else "err"] = res
    return wire.compact(reply), changed
