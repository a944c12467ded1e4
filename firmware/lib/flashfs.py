"""Flash file helpers: atomic replace (temp file + rename), tolerant JSON reads, and modules
loaded from flash for one call (`run_cold`).

A power cut during `write_atomic` leaves either the old or the new file, never half of one:
the rename is the commit. `os.rename` replaces the target on littlefs and on POSIX.
"""

import gc
import json
import os
import sys


def join(root, name):
    if not root or root == "/":
        return "/" + name if root == "/" else name
    return root.rstrip("/") + "/" + name


def write_atomic(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, path)


def read_json(path):
    """-> (object, None) or (None, reason) with reason "missing" or "corrupt"."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError:
        return None, "missing"
    try:
        return json.loads(raw), None
    except (ValueError, UnicodeError):
        return None, "corrupt"


def run_cold(name, func, *args):
    """Call function `func` of module `name`, loaded from flash for this call only. -> its result.
    For code that runs rarely (start-up, config, commands, the console, the other languages'
    strings): it is not resident while the device counts presses (docs/firmware.md, "Memory").
    What `func` returns must not be code of that module: its namespace is emptied afterwards."""
    mod = _load(name)
    try:
        return getattr(mod, func)(*args)
    finally:
        mod.__dict__.clear()
        gc.collect()  # free its code now, before long-lived objects are placed around it


async def run_cold_async(name, func, *args):
    """`run_cold` for a coroutine function."""
    mod = _load(name)
    try:
        return await getattr(mod, func)(*args)
    finally:
        mod.__dict__.clear()
        gc.collect()


def _load(name):
    mod = __import__(name)
    del sys.modules[name]  # the next use loads it again
    # Emptying its namespace after the call is what frees its code for sure: MicroPython's GC is
    # conservative, and any stale copy of a pointer to the module (a dead stack slot, say) would
    # otherwise keep every function of it alive. Measured: 3.4 KB kept at random without it.
    return mod
