"""The apply journal: every step written before and after it runs (sqlite, in the state dir).

It is what lets a crashed or killed apply be resumed by running apply again: the previous run is
found still marked ``running``, recorded as interrupted, and its in-flight steps are listed so the
new run re-reads those resources before acting (the provider's ``find`` adopts what the dead run
had created). Temporary resources of workload migrations are recorded here before they exist.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tenantshift.errors import TenantshiftError


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    started_at: str
    finished_at: str | None
    status: str
    resumed_from: str | None
    #: ``cleanup`` for the runs of ``tenantshift cleanup``.
    plan_digest: str | None = None


#: The journal's file name in a manifest's state directory.
JOURNAL_FILE = "journal.sqlite"


class JournalError(TenantshiftError):
    """The journal cannot be read or written (corrupt file, full disk): said with its path."""


class _Db:
    """The sqlite connection, its errors turned into one ``JournalError`` that names the file
    and what to do, instead of a traceback (security review L9)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # Private: the journal lists the tenant's whole inventory (review L11).
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600))
        # Steps are written from worker threads: one connection, serialized by sqlite's lock.
        self._conn = self._guard(
            lambda: sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        )

    def _guard(self, call: Any) -> Any:
        try:
            return call()
        except sqlite3.Error as exc:
            hint = (
                "free some space and run again"
                if "full" in str(exc)
                else f"move {self.path} aside to start a new journal (its history is lost)"
            )
            raise JournalError(f"journal {self.path}: {exc}; {hint}") from None

    def execute(self, sql: str, args: Any = ()) -> sqlite3.Cursor:
        cursor: sqlite3.Cursor = self._guard(lambda: self._conn.execute(sql, args))
        return cursor

    def rollback(self) -> None:
        """Undo the open transaction, if sqlite has not already (it does on some errors)."""
        with contextlib.suppress(sqlite3.Error):
            self._conn.rollback()

    def close(self) -> None:
        self._conn.close()


# -- the schema, as ordered steps ------------------------------------------------------------
# The journal's layout is numbered by sqlite's own ``PRAGMA user_version`` (alembic's version
# table, without a table): step N takes a journal from version N - 1 to N, and a journal is at
# the version of the last step it has had. To change the layout, append a step with a comment
# saying what changed and why, and a test opening a journal of the previous version
# (tests/engine/test_journal_schema.py). Never edit, reorder or remove a step once it is on
# main: journals in state directories are at its version, and only the steps above it run.

#: A migration step: run inside the upgrade's one transaction, on the journal's connection.
Step = Callable[[_Db], None]


def _sql(*statements: str) -> Step:
    """A step that is only SQL statements, run in order."""

    def run(db: _Db) -> None:
        for statement in statements:
            db.execute(statement)

    return run


# Steps 1 to 3 are the layouts journals had before they were versioned. Their tables are created
# IF NOT EXISTS because the probing upgrade of those days created every missing table before it
# added the missing columns, each statement committed alone: a journal killed in between has a
# later layout's tables but an earlier layout's columns, is detected at the earlier layout
# (``_unversioned_layout``), and must take the steps above it over tables it already has.
MIGRATIONS: tuple[Step, ...] = (
    # 1 (c53eb69): the first journal: runs, the steps of each, and workload temporaries.
    _sql(
        """CREATE TABLE IF NOT EXISTS runs (
            run_id TEXT PRIMARY KEY,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            status TEXT NOT NULL,            -- running | succeeded | failed | interrupted
            pid INTEGER NOT NULL,
            plan_digest TEXT,
            resumed_from TEXT
        )""",
        """CREATE TABLE IF NOT EXISTS steps (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id TEXT NOT NULL REFERENCES runs(run_id),
            node TEXT NOT NULL,
            operation TEXT NOT NULL,
            phase TEXT NOT NULL,             -- begin | done | failed | skipped
            target_id TEXT,
            detail TEXT,
            at TEXT NOT NULL
        )""",
        """CREATE TABLE IF NOT EXISTS temporaries (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id TEXT NOT NULL,
            owner TEXT NOT NULL,             -- the node that made it
            cloud TEXT NOT NULL,             -- source | destination
            kind TEXT NOT NULL,
            name TEXT NOT NULL,
            resource_id TEXT,
            state TEXT NOT NULL,             -- intended | created | cleaned
            at TEXT NOT NULL
        )""",
    ),
    # 2 (46e9f7e): node_state, where a workload is (its last phase and the ids it needs to go
    # on; kept across runs so a re-run resumes), and temporaries.data, what cleanup needs to
    # undo a temporary beyond its id (JSON; NULL reads as {}).
    _sql(
        """CREATE TABLE IF NOT EXISTS node_state (
            node TEXT PRIMARY KEY,
            phase TEXT NOT NULL,
            data TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )""",
        "ALTER TABLE temporaries ADD COLUMN data TEXT",
    ),
    # 3 (2ae8eac): for `tenantshift report`: phases, every phase of a workload with start and end
    # (node_state keeps only the last); copies, each verified copy's figures (JSON); runs.plan,
    # the plan document a run applied (JSON; NULL in runs recorded before it).
    _sql(
        """CREATE TABLE IF NOT EXISTS phases (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id TEXT NOT NULL,
            node TEXT NOT NULL,
            phase TEXT NOT NULL,
            status TEXT NOT NULL,            -- running | done | failed
            started_at TEXT NOT NULL,
            finished_at TEXT,
            detail TEXT
        )""",
        """CREATE TABLE IF NOT EXISTS copies (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id TEXT NOT NULL,
            node TEXT NOT NULL,
            data TEXT NOT NULL,
            at TEXT NOT NULL
        )""",
        "ALTER TABLE runs ADD COLUMN plan TEXT",
    ),
    # 4: for warm migration: syncs, one row per finished sync or cutover of a warm server
    # (its figures as JSON), which the plan's estimates, `status` and the report read; kept
    # across runs (keyed by the node, the server's address), unlike node_state.
    _sql(
        """CREATE TABLE IF NOT EXISTS syncs (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id TEXT NOT NULL,
            node TEXT NOT NULL,
            data TEXT NOT NULL,
            at TEXT NOT NULL
        )""",
    ),
)

#: The layout this code reads and writes; a journal at a higher version is refused.
SCHEMA_VERSION = len(MIGRATIONS)

#: What each layout before versions added (``table`` or ``table.column``), in the order of the
#: steps that make them (layout N is what steps 1..N make). Only journals with user_version 0
#: are inspected, once: no journal written since has version 0, so this list is closed.
_UNVERSIONED_LAYOUTS: tuple[tuple[str, ...], ...] = (
    ("runs", "steps", "temporaries"),
    ("node_state", "temporaries.data"),
    ("phases", "copies", "runs.plan"),
)


def _unversioned_layout(db: _Db) -> int:
    """The version of a journal written before versions (user_version 0): the last layout whose
    additions, and those of every layout before it, are all there (0 for a new, empty file)."""
    tables = {
        str(row[0]) for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    }
    have = set(tables)
    for table in tables:
        columns = db.execute("SELECT name FROM pragma_table_info(?)", (table,))
        have.update(f"{table}.{row[0]}" for row in columns)
    version = 0
    for added in _UNVERSIONED_LAYOUTS:
        if not have.issuperset(added):
            break
        version += 1
    return version


def _user_version(db: _Db) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def _too_new(db: _Db, version: int) -> JournalError:
    return JournalError(
        f"journal {db.path}: schema version {version} was written by a newer tenantshift "
        f"(this one knows versions up to {SCHEMA_VERSION}); run that version or a newer one "
        "with this state directory (the journal was left as it is)"
    )


def _upgrade(db: _Db) -> None:
    """Bring the journal to ``SCHEMA_VERSION``: every step above its version, then the new
    version, in one transaction (a kill or an error leaves it as it was). A new file takes all
    the steps: there is no second way of making the newest layout."""
    # A journal already current is only read: no write lock against a running apply.
    if _user_version(db) == SCHEMA_VERSION:
        return
    # IMMEDIATE: two tenantshift processes opening one old journal must not both upgrade it;
    # the second waits for the first and then reads the version it wrote.
    db.execute("BEGIN IMMEDIATE")
    try:
        version = _user_version(db)
        if version > SCHEMA_VERSION:
            raise _too_new(db, version)
        if version == 0:
            version = _unversioned_layout(db)
        for step in MIGRATIONS[version:]:
            step(db)
        # A pragma takes no parameters; SCHEMA_VERSION is this module's own int.
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        db.rollback()
        raise


class Journal:
    """One sqlite file; every write commits at once, so a SIGKILL loses nothing written.
    Opening it brings its schema to ``SCHEMA_VERSION``; one from a newer tenantshift is refused,
    untouched."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = path
        self._db = _Db(path)
        try:
            # Refused before WAL is switched on: that alone would rewrite the file's header.
            version = _user_version(self._db)
            if version > SCHEMA_VERSION:
                raise _too_new(self._db, version)
            self._db.execute("PRAGMA journal_mode=WAL")
            _upgrade(self._db)
        except BaseException:
            self._db.close()
            raise
        self.run_id: str | None = None
        self.resumed_from: str | None = None
        self.in_doubt: set[str] = set()

    def close(self) -> None:
        self._db.close()

    # -- runs ------------------------------------------------------------------------------
    def start_run(self, plan_digest: str, plan: dict[str, Any] | None = None) -> str:
        """Open a run; an earlier run still marked running died: it is marked interrupted.
        ``plan`` is the plan document applied (kept for ``tenantshift report``)."""
        row = self._db.execute(
            "SELECT run_id FROM runs WHERE status = 'running' ORDER BY started_at DESC LIMIT 1"
        ).fetchone()
        if row is not None:
            self.resumed_from = row[0]
            self.in_doubt = self.unfinished_nodes(row[0])
            self._db.execute("UPDATE runs SET status = 'interrupted' WHERE status = 'running'")
        self.run_id = uuid.uuid4().hex[:12]
        self._db.execute(
            "INSERT INTO runs (run_id, started_at, finished_at, status, pid, plan_digest, "
            "resumed_from, plan) VALUES (?, ?, NULL, 'running', ?, ?, ?, ?)",
            (
                self.run_id,
                _now(),
                os.getpid(),
                plan_digest,
                self.resumed_from,
                None if plan is None else json.dumps(plan, sort_keys=True),
            ),
        )
        return self.run_id

    def finish_run(self, succeeded: bool) -> None:
        self._db.execute(
            "UPDATE runs SET status = ?, finished_at = ? WHERE run_id = ?",
            ("succeeded" if succeeded else "failed", _now(), self.run_id),
        )

    def runs(self) -> list[RunInfo]:
        rows = self._db.execute(
            "SELECT run_id, started_at, finished_at, status, resumed_from, plan_digest FROM runs "
            "ORDER BY started_at"
        ).fetchall()
        return [RunInfo(*row) for row in rows]

    def run_plan(self, run_id: str) -> dict[str, Any] | None:
        """The plan document ``run_id`` applied; None for runs recorded before plans were."""
        row = self._db.execute("SELECT plan FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return None if row is None or row[0] is None else dict(json.loads(row[0]))

    # -- workload phases and copies (for reports) ------------------------------------------
    def phase_started(self, node: str, phase: str) -> int:
        cursor = self._db.execute(
            "INSERT INTO phases (run_id, node, phase, status, started_at) "
            "VALUES (?, ?, ?, 'running', ?)",
            (self.run_id, node, phase, _now()),
        )
        return int(cursor.lastrowid or 0)

    def phase_finished(self, seq: int, status: str, detail: str | None = None) -> None:
        self._db.execute(
            "UPDATE phases SET status = ?, finished_at = ?, detail = ? WHERE seq = ?",
            (status, _now(), detail, seq),
        )

    def phases(self, run_ids: list[str]) -> list[dict[str, Any]]:
        return self._rows("phases", run_ids)

    def record_copy(self, node: str, data: dict[str, Any]) -> None:
        self._record_figures("copies", node, data)

    def _record_figures(self, table: str, node: str, data: dict[str, Any]) -> None:
        """A row of ``copies`` or ``syncs``: this run, the node, its figures as JSON."""
        self._db.execute(
            f"INSERT INTO {table} (run_id, node, data, at) VALUES (?, ?, ?, ?)",
            (self.run_id, node, json.dumps(data, sort_keys=True), _now()),
        )

    def copies(self, run_ids: list[str]) -> list[dict[str, Any]]:
        rows = self._rows("copies", run_ids)
        for row in rows:
            row["data"] = json.loads(row["data"])
        return rows

    def record_sync(self, node: str, data: dict[str, Any]) -> None:
        """A warm migration's sync or cutover ended (``data``: its figures)."""
        self._record_figures("syncs", node, data)

    def syncs(self, node: str | None = None) -> list[dict[str, Any]]:
        """Every recorded sync and cutover (of one node), oldest first: each row's ``data``
        with ``run_id``, ``node`` and ``at``."""
        where, args = ("WHERE node = ?", (node,)) if node is not None else ("", ())
        cursor = self._db.execute(
            f"SELECT run_id, node, data, at FROM syncs {where} ORDER BY seq", args
        )
        return [
            {**json.loads(data), "run_id": run_id, "node": name, "at": at}
            for run_id, name, data, at in cursor.fetchall()
        ]

    def _rows(self, table: str, run_ids: list[str]) -> list[dict[str, Any]]:
        marks = ", ".join("?" for _ in run_ids) or "NULL"
        cursor = self._db.execute(
            f"SELECT * FROM {table} WHERE run_id IN ({marks}) ORDER BY seq", tuple(run_ids)
        )
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    # -- steps -----------------------------------------------------------------------------
    def record(
        self,
        node: str,
        operation: str,
        phase: str,
        *,
        target_id: str | None = None,
        detail: str | dict[str, Any] | None = None,
    ) -> None:
        text = json.dumps(detail, sort_keys=True) if isinstance(detail, dict) else detail
        self._db.execute(
            "INSERT INTO steps (run_id, node, operation, phase, target_id, detail, at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (self.run_id, node, operation, phase, target_id, text, _now()),
        )

    def steps(self, run_id: str | None = None) -> list[dict[str, Any]]:
        query = "SELECT run_id, node, operation, phase, target_id, detail, at FROM steps"
        args: tuple[str, ...] = ()
        if run_id is not None:
            query += " WHERE run_id = ?"
            args = (run_id,)
        cursor = self._db.execute(query + " ORDER BY seq", args)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def started_nodes(self) -> set[str]:
        """Every node any run of this journal has begun (or skipped), whatever came of it."""
        return {str(row[0]) for row in self._db.execute("SELECT DISTINCT node FROM steps")}

    def unfinished_nodes(self, run_id: str) -> set[str]:
        """Nodes that began in ``run_id`` and never reached done, failed or skipped."""
        begun: set[str] = set()
        for step in self.steps(run_id):
            if step["phase"] == "begin":
                begun.add(step["node"])
            else:
                begun.discard(step["node"])
        return begun

    # -- node state (long nodes) -----------------------------------------------------------
    def advance(self, node: str, phase: str, data: dict[str, Any]) -> None:
        """Record that ``node`` completed ``phase``; ``data`` is all it needs to resume."""
        self._db.execute(
            "INSERT INTO node_state VALUES (?, ?, ?, ?) ON CONFLICT(node) DO UPDATE SET "
            "phase = excluded.phase, data = excluded.data, updated_at = excluded.updated_at",
            (node, phase, json.dumps(data, sort_keys=True), _now()),
        )

    def state_of(self, node: str) -> tuple[str, dict[str, Any]] | None:
        row = self._db.execute(
            "SELECT phase, data FROM node_state WHERE node = ?", (node,)
        ).fetchone()
        return None if row is None else (str(row[0]), json.loads(row[1]))

    def clear_state(self, node: str) -> None:
        self._db.execute("DELETE FROM node_state WHERE node = ?", (node,))

    def node_states(self) -> dict[str, tuple[str, dict[str, Any]]]:
        rows = self._db.execute("SELECT node, phase, data FROM node_state ORDER BY node")
        return {str(n): (str(p), json.loads(d)) for n, p, d in rows.fetchall()}

    # -- temporaries (workload migrations) -------------------------------------------------
    def intend_temporary(
        self, owner: str, cloud: str, kind: str, name: str, data: dict[str, Any] | None = None
    ) -> int:
        """Written *before* the temporary is created: a crash between the two still leaves a
        row that cleanup follows (looking the resource up by ``name`` when it has no id)."""
        cursor = self._db.execute(
            "INSERT INTO temporaries (run_id, owner, cloud, kind, name, state, at, data) "
            "VALUES (?, ?, ?, ?, ?, 'intended', ?, ?)",
            (self.run_id, owner, cloud, kind, name, _now(), json.dumps(data or {})),
        )
        return int(cursor.lastrowid or 0)

    def temporary_created(self, seq: int, resource_id: str) -> None:
        self._db.execute(
            "UPDATE temporaries SET state = 'created', resource_id = ?, at = ? WHERE seq = ?",
            (resource_id, _now(), seq),
        )

    def temporary_cleaned(self, seq: int) -> None:
        self._db.execute(
            "UPDATE temporaries SET state = 'cleaned', at = ? WHERE seq = ?", (_now(), seq)
        )

    def pending_temporaries(self, owner: str | None = None) -> list[dict[str, Any]]:
        """Temporaries not cleaned yet, newest first (undo runs in reverse order of doing)."""
        query = (
            "SELECT seq, owner, cloud, kind, name, resource_id, state, data FROM temporaries "
            "WHERE state != 'cleaned'"
        )
        args: tuple[str, ...] = ()
        if owner is not None:
            query += " AND owner = ?"
            args = (owner,)
        cursor = self._db.execute(query + " ORDER BY seq DESC", args)
        names = [d[0] for d in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        for row in rows:
            row["data"] = json.loads(row["data"] or "{}")
        return rows
