"""Databases for the hub benchmarks: the real hub process on a fresh SQLite file or a fresh
PostgreSQL schema, and the same database opened directly with its driver for the raw baseline.

A `Database` starts the hub on it (`python -m hub --db FILE`, or `--db-url URL` for PostgreSQL),
clones a table of the hub's schema under another name with the same DDL (columns, constraints,
indexes, foreign keys), reads back the rows the hub stored (every column but a generated key),
and inserts rows into a clone the way a program using the bare driver would:
- SQLite: `sqlite3`, the hub's pragmas (WAL, synchronous=FULL, foreign_keys=ON), one
  `BEGIN IMMEDIATE … COMMIT` per transaction, `executemany` per table;
- PostgreSQL: `psycopg` (sync), one transaction per group, `executemany` (pipelined by psycopg, as
  the hub's store does) or `COPY … FROM STDIN` (`write_row` per row).

PostgreSQL is `--pg-dsn`, else `HCP_PG_DSN`, else a throwaway cluster (tests/fixtures/postgres.py:
initdb into a temp folder, unix socket only, fsync off); each run gets a new schema, dropped at
the end. CPU is read from /proc: the hub process, and the PostgreSQL processes doing the work
(every process of a throwaway cluster; on a shared server, the backends named by this run's
`application_name`).
"""

from __future__ import annotations

import os
import re
import sqlite3
import sys
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from simulator.services import HubProcess  # noqa: E402
from tests.fixtures.postgres import ENV_DSN, PgServer, ThrowawayCluster, find_binaries  # noqa: E402

BUSY_TIMEOUT_MS = 5000  # as the hub's store: the hub holds the file open while the raw rounds run
LOOKUP_CHUNK = 400  # keys per IN (...) list when reading back (SQLite's old 999-variable limit)


# ---------------------------------------------------------------------------- /proc readings


def cpu_s(pid: int) -> float:
    """user + system CPU seconds of a process (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(ppid: int) -> list[int]:
    """The pids whose parent is `ppid`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == ppid:
                found.append(int(entry))
    return found


def machine_jiffies() -> tuple[float, float]:
    """(all CPU seconds, idle + iowait CPU seconds) of the machine since boot, summed over CPUs."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    return sum(fields[:8]) / tick, (fields[3] + fields[4]) / tick


class CpuMeter:
    """CPU seconds used from `start()` on by groups of processes (each a callable -> pids, read
    at both ends: a process that appeared meanwhile counts whole), the machine's busy cores, and
    the cores busy with anything else (other people's work on a shared machine)."""

    def __init__(self, groups: dict[str, Any]):
        self.groups = groups

    def _now(self) -> dict[str, dict[int, float]]:
        return {name: {pid: cpu_s(pid) for pid in pids()} for name, pids in self.groups.items()}

    def start(self) -> None:
        self._start = self._now()
        self._machine = machine_jiffies()

    def used(self, wall_s: float) -> dict[str, float]:
        end = self._now()
        out = {}
        for name, pids in end.items():
            before = self._start[name]
            out[f"{name}_cpu_s"] = round(sum(cpu - before.get(pid, 0.0) for pid, cpu in pids.items()), 3)
        total, idle = machine_jiffies()
        busy = (total - self._machine[0]) - (idle - self._machine[1])
        ours = sum(out.values())
        if wall_s > 0:
            out["machine_busy_cores"] = round(busy / wall_s, 2)
            out["others_busy_cores"] = round(max(0.0, busy - ours) / wall_s, 2)  # the shared machine's load
        return out


# ---------------------------------------------------------------------------- databases


class Database(ABC):
    """One backend's database for a run: `hub(workdir)` makes the hub process on it; `raw` is a
    connection of the bare driver; the clone/read/insert methods work on the hub's tables."""

    backend = ""
    method = ""  # how `insert` writes, for the figures

    @abstractmethod
    def hub(self, workdir: Path) -> HubProcess:
        ...

    @abstractmethod
    def columns(self, table: str) -> list[str]:
        """The table's columns in order, without generated keys (the database makes those)."""
        ...

    @abstractmethod
    def clone(self, table: str, name: str) -> None:
        """A new empty table `name` with `table`'s DDL: columns, constraints, indexes, triggers/FKs."""
        ...

    @abstractmethod
    def rows_after(self, table: str, key: str, after: int) -> list[tuple]:
        """`columns(table)` of the rows whose `key` > after, in `key` order."""
        ...

    @abstractmethod
    def rows_where_in(self, table: str, column: str, values: Sequence[Any]) -> list[tuple]:
        """`columns(table)` of the rows whose `column` is one of `values` (any order)."""
        ...

    @abstractmethod
    def scalar(self, query: str, params: Sequence[Any] = ()) -> Any:
        ...

    @abstractmethod
    def transaction(self, writes: Sequence[tuple[str, list[tuple]]]) -> None:
        """One transaction inserting each (table, rows) with executemany, in order."""
        ...

    def copy(self, table: str, rows: list[tuple]) -> None:
        """One transaction appending `rows` with COPY (PostgreSQL only)."""
        raise TypeError(f"{self.backend} has no COPY")

    def cpu_groups(self) -> dict[str, Any]:
        """Process groups of the database server for a CpuMeter (none for SQLite: it runs inside
        the hub and the bench processes)."""
        return {}

    @abstractmethod
    def info(self) -> dict[str, Any]:
        ...

    @abstractmethod
    def close(self) -> None:
        ...


class SqliteDatabase(Database):
    backend = "sqlite"
    method = ("sqlite3 executemany, BEGIN IMMEDIATE ... COMMIT per transaction; WAL, "
              "synchronous=FULL, foreign_keys=ON as the hub")

    def __init__(self, folder: Path):
        self.path = (folder / "hub" / "hub.sqlite3").resolve()  # where HubProcess(folder / "hub") keeps it
        self._raw: sqlite3.Connection | None = None
        self._cols: dict[str, list[str]] = {}

    def hub(self, workdir: Path) -> HubProcess:
        assert (workdir / "hub.sqlite3").resolve() == self.path, "the raw rounds open the hub's file"
        return HubProcess(workdir)

    @property
    def raw(self) -> sqlite3.Connection:
        """Opened after the hub made and migrated the file."""
        if self._raw is None:
            con = sqlite3.connect(self.path, isolation_level=None)
            con.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = con.execute("PRAGMA journal_mode").fetchone()[0]
            if mode.lower() != "wal":
                raise RuntimeError(f"{self.path} is in {mode} mode, the hub's is WAL")
            con.execute("PRAGMA synchronous = FULL")
            con.execute("PRAGMA foreign_keys = ON")
            self._raw = con
        return self._raw

    def columns(self, table: str) -> list[str]:
        info = self.raw.execute(f"PRAGMA table_info({table})").fetchall()
        pk = [row for row in info if row[5]]
        rowid_alias = pk[0][1] if len(pk) == 1 and pk[0][2].upper() == "INTEGER" else None
        return [row[1] for row in info if row[1] != rowid_alias]

    def clone(self, table: str, name: str) -> None:
        objects = self.raw.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE tbl_name = ? AND sql IS NOT NULL "
            "ORDER BY type != 'table'", (table,)).fetchall()
        for kind, obj, text in objects:
            if kind == "table":
                text = re.sub(rf'^CREATE TABLE\s+"?{table}"?', f"CREATE TABLE {name}", text, count=1)
            else:  # index or trigger: its own name, and the table it is ON
                text = re.sub(rf'\b"?{re.escape(obj)}"?(\s)', rf"{name}__{obj}\1", text, count=1)
                text = re.sub(rf'\bON\s+"?{table}"?\b', f"ON {name}", text, count=1)
            self.raw.execute(text)

    def rows_after(self, table: str, key: str, after: int) -> list[tuple]:
        cols = ", ".join(self.columns(table))
        return self.raw.execute(f"SELECT {cols} FROM {table} WHERE {key} > ? ORDER BY {key}",
                                (after,)).fetchall()

    def rows_where_in(self, table: str, column: str, values: Sequence[Any]) -> list[tuple]:
        cols = ", ".join(self.columns(table))
        out: list[tuple] = []
        for start in range(0, len(values), LOOKUP_CHUNK):
            chunk = list(values[start:start + LOOKUP_CHUNK])
            marks = ",".join("?" * len(chunk))
            out += self.raw.execute(f"SELECT {cols} FROM {table} WHERE {column} IN ({marks})",
                                    chunk).fetchall()
        return out

    def scalar(self, query: str, params: Sequence[Any] = ()) -> Any:
        return self.raw.execute(query.replace("%s", "?"), params).fetchone()[0]

    def transaction(self, writes: Sequence[tuple[str, list[tuple]]]) -> None:
        con = self.raw
        con.execute("BEGIN IMMEDIATE")
        try:
            for table, rows in writes:
                if rows:
                    cols = self._insert_cols(table)
                    con.executemany(f"INSERT INTO {table} ({', '.join(cols)}) "
                                    f"VALUES ({','.join('?' * len(cols))})", rows)
            con.execute("COMMIT")
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise

    def _insert_cols(self, table: str) -> list[str]:
        if table not in self._cols:
            self._cols[table] = self.columns(table)
        return self._cols[table]

    def info(self) -> dict[str, Any]:
        return {"sqlite_version": sqlite3.sqlite_version, "path_fs": _fs_type(self.path),
                "db_bytes": sum(p.stat().st_size for p in self.path.parent.glob("hub.sqlite3*"))}

    def close(self) -> None:
        if self._raw is not None:
            self._raw.close()
            self._raw = None


class PgHubProcess(HubProcess):
    """HubProcess on a PostgreSQL URL (`--db-url`); its connections carry `app_name`."""

    def __init__(self, workdir: Path, db_url: str, app_name: str):
        super().__init__(workdir)
        self.db_url = db_url
        self.app_name = app_name

    def command(self) -> list[str]:
        return [sys.executable, "-m", "hub", "--db-url", self.db_url, "--host", "127.0.0.1",
                "--port", str(self.port)]

    def env(self) -> dict[str, str]:
        env = super().env()
        env["PGAPPNAME"] = self.app_name  # libpq's default application_name: finds its backends
        return env


class PostgresDatabase(Database):
    backend = "postgres"
    method = ("psycopg 3 (sync) executemany of INSERT (pipelined by psycopg, as the hub's store), "
              "one transaction per group")

    def __init__(self, dsn: str | None):
        self._stack = ExitStack()
        self.cluster: ThrowawayCluster | None = None
        self.source = "--pg-dsn" if dsn else ENV_DSN if os.environ.get(ENV_DSN) else \
            "throwaway cluster (tests/fixtures/postgres.py)"
        dsn = dsn or os.environ.get(ENV_DSN)
        try:
            if not dsn:
                binaries = find_binaries()
                if binaries is None:
                    raise RuntimeError(f"no PostgreSQL: set {ENV_DSN} or --pg-dsn, or install "
                                       "initdb/pg_ctl (a throwaway cluster is made from them)")
                self.cluster = ThrowawayCluster(binaries)
                self._stack.callback(self.cluster.stop)
                self.cluster.start()
                dsn = self.cluster.dsn
            self.server = PgServer(dsn)
            self._stack.callback(self.server.close)
            self.dsn = self._stack.enter_context(self.server.schema())
        except BaseException:
            self._stack.close()
            raise
        self.run_id = uuid.uuid4().hex[:8]
        self.hub_app = f"hcp-bench-hub-{self.run_id}"
        self.raw_app = f"hcp-bench-raw-{self.run_id}"
        self._raw: psycopg.Connection | None = None
        self._sql: dict[str, sql.Composed] = {}

    def hub(self, workdir: Path) -> HubProcess:
        return PgHubProcess(workdir, self.dsn, self.hub_app)

    @property
    def raw(self) -> psycopg.Connection:
        if self._raw is None:
            self._raw = psycopg.connect(self.dsn, autocommit=True, application_name=self.raw_app)
        return self._raw

    def columns(self, table: str) -> list[str]:
        rows = self.raw.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND table_name = %s AND is_identity = 'NO' AND is_generated = 'NEVER' "
            "ORDER BY ordinal_position", (table,)).fetchall()
        return [row[0] for row in rows]

    def clone(self, table: str, name: str) -> None:
        src, dst = sql.Identifier(table), sql.Identifier(name)
        with self.raw.transaction():
            # LIKE … INCLUDING ALL: defaults, identity, NOT NULL and CHECK constraints, indexes
            # (primary key and UNIQUE too); foreign keys are added below
            self.raw.execute(sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING ALL)").format(dst, src))
            for (definition,) in self.raw.execute(
                    "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE contype = 'f' "
                    "AND conrelid = %s::regclass", (table,)).fetchall():
                self.raw.execute(sql.SQL("ALTER TABLE {} ADD ").format(dst) + sql.SQL(definition))

    def rows_after(self, table: str, key: str, after: int) -> list[tuple]:
        cols = sql.SQL(", ").join(map(sql.Identifier, self.columns(table)))
        return self.raw.execute(sql.SQL("SELECT {} FROM {} WHERE {} > %s ORDER BY {}").format(
            cols, sql.Identifier(table), sql.Identifier(key), sql.Identifier(key)), (after,)).fetchall()

    def rows_where_in(self, table: str, column: str, values: Sequence[Any]) -> list[tuple]:
        cols = sql.SQL(", ").join(map(sql.Identifier, self.columns(table)))
        return self.raw.execute(sql.SQL("SELECT {} FROM {} WHERE {} = ANY(%s)").format(
            cols, sql.Identifier(table), sql.Identifier(column)), (list(values),)).fetchall()

    def scalar(self, query: str, params: Sequence[Any] = ()) -> Any:
        return self.raw.execute(query, params).fetchone()[0]  # type: ignore[index]

    def _insert_sql(self, table: str) -> sql.Composed:
        if table not in self._sql:
            cols = self.columns(table)
            self._sql[table] = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
                sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, cols)),
                sql.SQL(", ").join(sql.Placeholder() * len(cols)))
        return self._sql[table]

    def transaction(self, writes: Sequence[tuple[str, list[tuple]]]) -> None:
        with self.raw.transaction(), self.raw.cursor() as cur:
            for table, rows in writes:
                if rows:
                    cur.executemany(self._insert_sql(table), rows)

    def copy(self, table: str, rows: list[tuple]) -> None:
        cols = sql.SQL(", ").join(map(sql.Identifier, self.columns(table)))
        with self.raw.transaction(), self.raw.cursor() as cur, cur.copy(
                sql.SQL("COPY {} ({}) FROM STDIN").format(sql.Identifier(table), cols)) as copy:
            for row in rows:
                copy.write_row(row)

    def cpu_groups(self) -> dict[str, Any]:
        if self.cluster is not None:  # the whole cluster serves only this run
            pid_file = self.cluster.data / "postmaster.pid"
            postmaster = int(pid_file.read_text().split("\n", 1)[0])
            return {"postgres": lambda: [postmaster, *children(postmaster)]}
        return {"postgres": lambda: self._backends(self.hub_app, self.raw_app)}

    def _backends(self, *apps: str) -> list[int]:
        return [row[0] for row in self.server._admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = ANY(%s)", (list(apps),)).fetchall()]

    def info(self) -> dict[str, Any]:
        settings = {name: self.scalar(f"SHOW {name}") for name in
                    ("server_version", "fsync", "synchronous_commit", "shared_buffers", "wal_level")}
        return {"server": self.source,
                "cpu_scope": "all cluster processes" if self.cluster else
                "backends of this run (application_name)",
                "schema_bytes": self.scalar(
                    "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c "
                    "WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r'"),
                **settings}

    def close(self) -> None:
        if self._raw is not None:
            self._raw.close()
            self._raw = None
        self._stack.close()


def open_database(backend: str, folder: Path, pg_dsn: str | None) -> Database:
    if backend == "sqlite":
        return SqliteDatabase(folder)
    if backend == "postgres":
        return PostgresDatabase(pg_dsn)
    raise ValueError(f"unknown backend {backend!r} (sqlite, postgres)")


def _fs_type(path: Path) -> str:
    """The filesystem type of the mount holding `path` (from /proc/mounts)."""
    best, kind = "", "?"
    target = str(path.resolve())
    for line in Path("/proc/mounts").read_text().splitlines():
        _, mount, fs, *_ = line.split()
        if (target == mount or target.startswith(mount.rstrip("/") + "/")) and len(mount) > len(best):
            best, kind = mount, fs
    return kind


def chunks(values: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start:start + size]
