"""Flash file helpers: atomic replace (temp file + rename) and tolerant JSON reads.

A power cut during `write_atomic` leaves either the old or the new file, never half of one:
the rename is the commit. `os.rename` replaces the target on littlefs and on POSIX.
"""

import json
import os


def join(root, name):
    if not root or root == "/":
        return "/" + name if root == "/" else name
    return root.rstrip("/") + "/" + name


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def remove(path):
    try:
        os.remove(path)
    except OSError:
        pass  # already gone: the goal state


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
