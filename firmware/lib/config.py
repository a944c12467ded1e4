"""Device configuration: JSON on flash, written atomically, validated on load.

A missing or corrupt file, or a bad value, never stops the device: it falls back to the default
for that key and reports the problem (`errors`) in health.

Cold code (docs/firmware.md, "Memory"): the device runs this module with `flashfs.run_cold` at boot
and when a config change arrives, and keeps only the values dict, not this code.
"""

from flashfs import join, read_json, write_atomic
from wire import compact, valid_id

# key: (default, kind, lo, hi). kind: "id" (identifier), "str", "int", "bool", "lang".
SCHEMA = {
    "dev": ("", "id", 0, 32),
    "hall": ("", "id", 0, 32),
    "window": ("", "id", 0, 16),
    "lang": ("zh-Hans", "lang", 0, 0),
    "broker_host": ("127.0.0.1", "str", 1, 64),
    "broker_port": (1883, "int", 1, 65535),
    "mqtt_user": ("", "str", 0, 64),
    "mqtt_pass": ("", "str", 0, 64),
    "wifi_ssid": ("", "str", 0, 32),
    "wifi_pass": ("", "str", 0, 64),
    "session_ttl_s": (60, "int", 5, 3600),
    "thanks_ms": (3000, "int", 500, 30000),
    "health_s": (60, "int", 5, 3600),
    "keepalive_s": (30, "int", 5, 600),
    "outbox_max": (200, "int", 1, 5000),
    "invite": (False, "bool", 0, 0),
    "stuck_ms": (10000, "int", 1000, 600000),
}
SECRET = ("mqtt_pass", "wifi_pass")
LANGS = ("zh-Hans", "zh-Hant", "en", "ug")
FILE = "config.json"


def check(key, value):
    """-> None if `value` is acceptable for `key`, else the reason."""
    if key not in SCHEMA:
        return "unknown key"
    _default, kind, lo, hi = SCHEMA[key]
    if kind == "bool":
        return None if isinstance(value, bool) else "not a boolean"
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            return "not an integer in %d..%d" % (lo, hi)
        return None
    if kind == "lang":
        return None if value in LANGS else "not one of " + ",".join(LANGS)
    if not isinstance(value, str) or not lo <= len(value) <= hi:
        return "not a string of %d..%d characters" % (lo, hi)
    if kind == "id" and value and not valid_id(value, hi):
        return "not an identifier"
    return None


def load(root):
    """-> (values, errors): every key of SCHEMA, from the file where valid, else its default; errors
    are the problems found (reported in health). Never raises for a bad file."""
    values = {k: v[0] for k, v in SCHEMA.items()}
    errors = []
    obj, problem = read_json(join(root, FILE))
    if problem == "corrupt" or (obj is not None and not isinstance(obj, dict)):
        errors.append("config corrupt: defaults in use")
        return values, errors
    for key, value in (obj or {}).items():
        reason = check(key, value)
        if reason is None:
            values[key] = value
        else:
            errors.append("config %s: %s" % (key, reason))
    return values, errors


def update(root, values, changes):
    """Validate every change, then write them all at once. -> (new values, changed keys).
    Raises ValueError("key: reason") and writes nothing if any value is bad."""
    for key, value in changes.items():
        reason = check(key, value)
        if reason is not None:
            raise ValueError(key + ": " + reason)
    changed = [k for k, v in changes.items() if values[k] != v]
    if changed:
        values = dict(values)
        values.update(changes)
        write_atomic(join(root, FILE), compact(values))
    return values, changed


def public(values):
    return {k: v for k, v in values.items() if k not in SECRET}
