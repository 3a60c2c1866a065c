"""The journal's schema versions: a journal of every layout it had before versions opens at the
newest version with its rows still read through ``Journal``; the steps make exactly those
layouts; an upgrade is one transaction; reopening changes nothing; a journal of a newer
tenantshift is refused untouched."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import pytest

from tenantshift.engine.state import journal as journal_module
from tenantshift.engine.state.journal import SCHEMA_VERSION, Journal, JournalError, RunInfo

# -- the layouts before versions, as the tenantshift of each commit left a journal -------------
# Each is that commit's SCHEMA, verbatim, followed by the ALTERs its probing upgrade
# (_ADDED_COLUMNS) made on every open: a journal of that layout has exactly these.

# c53eb69e55281489b53f09caf24f2f1ab33938fd (Core: ... walker, journal, lock, memory provider)
LAYOUT_1 = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    status TEXT NOT NULL,            -- running | succeeded | failed | interrupted
    pid INTEGER NOT NULL,
    plan_digest TEXT,
    resumed_from TEXT
);
CREATE TABLE IF NOT EXISTS steps (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    node TEXT NOT NULL,
    operation TEXT NOT NULL,
    phase TEXT NOT NULL,             -- begin | done | failed | skipped
    target_id TEXT,
    detail TEXT,
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS temporaries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    owner TEXT NOT NULL,             -- the node that made it
    cloud TEXT NOT NULL,             -- source | destination
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    resource_id TEXT,
    state TEXT NOT NULL,             -- intended | created | cleaned
    at TEXT NOT NULL
);
"""

# 46e9f7e5394a6e29baa449a50c00fb9757659e1e (WIP engine: ... node state, workload volume
# migration); unchanged through 6e4a0ae, a5d7527 and 306b099, which changed only code.
LAYOUT_2_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    status TEXT NOT NULL,            -- running | succeeded | failed | interrupted
    pid INTEGER NOT NULL,
    plan_digest TEXT,
    resumed_from TEXT
);
CREATE TABLE IF NOT EXISTS steps (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    node TEXT NOT NULL,
    operation TEXT NOT NULL,
    phase TEXT NOT NULL,             -- begin | done | failed | skipped
    target_id TEXT,
    detail TEXT,
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS temporaries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    owner TEXT NOT NULL,             -- the node that made it
    cloud TEXT NOT NULL,             -- source | destination
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    resource_id TEXT,
    state TEXT NOT NULL,             -- intended | created | cleaned
    at TEXT NOT NULL
);
-- Where a long node (a workload migration) is: its last completed phase and the ids it needs
-- to go on. Kept across runs, so a re-run resumes; cleared when the node completes.
CREATE TABLE IF NOT EXISTS node_state (
    node TEXT PRIMARY KEY,
    phase TEXT NOT NULL,
    data TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
"""
# _ADDED_COLUMNS = (("temporaries", "data", "TEXT"),)
LAYOUT_2 = LAYOUT_2_SCHEMA + "ALTER TABLE temporaries ADD COLUMN data TEXT;\n"

# 2ae8eac044ff7c14663a48529b9ec89fa7dae01f (report: tenantshift report writes ...); the layout
# of main until schema versions.
LAYOUT_3_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    status TEXT NOT NULL,            -- running | succeeded | failed | interrupted
    pid INTEGER NOT NULL,
    plan_digest TEXT,
    resumed_from TEXT
);
CREATE TABLE IF NOT EXISTS steps (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    node TEXT NOT NULL,
    operation TEXT NOT NULL,
    phase TEXT NOT NULL,             -- begin | done | failed | skipped
    target_id TEXT,
    detail TEXT,
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS temporaries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    owner TEXT NOT NULL,             -- the node that made it
    cloud TEXT NOT NULL,             -- source | destination
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    resource_id TEXT,
    state TEXT NOT NULL,             -- intended | created | cleaned
    at TEXT NOT NULL
);
-- Where a long node (a workload migration) is: its last completed phase and the ids it needs
-- to go on. Kept across runs, so a re-run resumes; cleared when the node completes.
-- Timings of a workload's phases, per run (node_state keeps only the last phase, and is
-- cleared when the node completes; reports need every phase, start and end).
CREATE TABLE IF NOT EXISTS phases (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    node TEXT NOT NULL,
    phase TEXT NOT NULL,
    status TEXT NOT NULL,            -- running | done | failed
    started_at TEXT NOT NULL,
    finished_at TEXT,
    detail TEXT
);
-- One row per verified volume copy: the transfer's figures (bytes logical, allocated, data,
-- wire; seconds; codec; digest; verified), as JSON.
CREATE TABLE IF NOT EXISTS copies (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    node TEXT NOT NULL,
    data TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS node_state (
    node TEXT PRIMARY KEY,
    phase TEXT NOT NULL,
    data TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
"""
# _ADDED_COLUMNS = (("temporaries", "data", "TEXT"), ("runs", "plan", "TEXT"))
LAYOUT_3 = (
    LAYOUT_3_SCHEMA
    + "ALTER TABLE temporaries ADD COLUMN data TEXT;\n"
    + "ALTER TABLE runs ADD COLUMN plan TEXT;\n"
)

#: Every layout before versions, in order: layout N is what steps 1..N must make.
LAYOUTS = (LAYOUT_1, LAYOUT_2, LAYOUT_3)

# -- a few rows of what each layout held ------------------------------------------------------
# A finished run, then one killed while migrating volume.data: its network is done, the
# migration began and never ended, an attachment to a conversion host is still in place.
VOLUME = "11111111-2222-3333-4444-555555555555"
HOST = "99999999-8888-7777-6666-555555555555"
ROWS_1 = f"""
INSERT INTO runs VALUES ('a1', '2026-11-27T09:00:00.000+00:00',
    '2026-11-27T09:00:04.000+00:00', 'succeeded', 4100, 'digest-1', NULL);
INSERT INTO runs VALUES ('b2', '2026-11-27T10:00:00.000+00:00', NULL, 'running', 4200,
    'digest-2', NULL);
INSERT INTO steps (run_id, node, operation, phase, target_id, detail, at) VALUES
    ('a1', 'network.app', 'create', 'begin', NULL, NULL, '2026-11-27T09:00:01.000+00:00'),
    ('a1', 'network.app', 'create', 'done', 'net-1', NULL, '2026-11-27T09:00:02.000+00:00'),
    ('b2', 'network.db', 'create', 'begin', NULL, NULL, '2026-11-27T10:00:01.000+00:00'),
    ('b2', 'network.db', 'create', 'done', 'net-2', NULL, '2026-11-27T10:00:02.000+00:00'),
    ('b2', 'volume.data', 'migrate', 'begin', NULL, NULL, '2026-11-27T10:00:03.000+00:00');
INSERT INTO temporaries (run_id, owner, cloud, kind, name, resource_id, state, at) VALUES
    ('a1', 'volume.logs', 'destination', 'attachment', 'vol-logs@{HOST}', 'vol-logs',
        'cleaned', '2026-11-27T09:00:03.000+00:00'),
    ('b2', 'volume.data', 'source', 'attachment', '{VOLUME}@{HOST}', '{VOLUME}', 'created',
        '2026-11-27T10:00:04.000+00:00');
"""

# 46e9f7e: the same killed run, now with the workload's state (it finished ``attached``) and
# the attachment's data; the first temporary is from before the data column (NULL).
NODE_DATA = {
    "source_id": VOLUME,
    "dst_volume": "dst-vol-1",
    "src_host": HOST,
    "dst_host": "dst-host-1",
}
ATTACHMENT = {"server_id": HOST, "volume_id": VOLUME}
ROWS_2 = f"""
INSERT INTO runs VALUES ('c3', '2026-11-30T10:00:00.000+00:00', NULL, 'running', 4300,
    'digest-3', NULL);
INSERT INTO steps (run_id, node, operation, phase, target_id, detail, at) VALUES
    ('c3', 'volume.data', 'migrate', 'begin', NULL, NULL, '2026-11-30T10:00:01.000+00:00');
INSERT INTO temporaries (run_id, owner, cloud, kind, name, resource_id, state, at, data) VALUES
    ('c3', 'volume.old', 'source', 'attachment', 'vol-old@{HOST}', NULL, 'intended',
        '2026-11-30T10:00:01.500+00:00', NULL),
    ('c3', 'volume.data', 'source', 'attachment', '{VOLUME}@{HOST}', '{VOLUME}', 'created',
        '2026-11-30T10:00:02.000+00:00', '{json.dumps(ATTACHMENT)}');
INSERT INTO node_state VALUES ('volume.data', 'attached', '{json.dumps(NODE_DATA)}',
    '2026-11-30T10:00:02.500+00:00');
"""

# 2ae8eac: the run keeps its plan, the workload's phases and a verified copy of another volume.
PLAN = {"format_version": 1, "changes": [{"address": "volume.data", "action": "migrate"}]}
COPY = {"bytes_logical": 1073741824, "bytes_wire": 52428800, "codec": "zstd", "verified": True}
ROWS_3 = f"""
INSERT INTO runs (run_id, started_at, finished_at, status, pid, plan_digest, resumed_from, plan)
    VALUES ('e5', '2026-12-02T10:00:00.000+00:00', NULL, 'running', 4500, 'digest-5', NULL,
    '{json.dumps(PLAN)}');
INSERT INTO steps (run_id, node, operation, phase, target_id, detail, at) VALUES
    ('e5', 'volume.logs', 'migrate', 'begin', NULL, NULL, '2026-12-02T10:00:01.000+00:00'),
    ('e5', 'volume.logs', 'migrate', 'done', 'dst-logs', NULL, '2026-12-02T10:00:09.000+00:00'),
    ('e5', 'volume.data', 'migrate', 'begin', NULL, NULL, '2026-12-02T10:00:01.000+00:00');
INSERT INTO phases (run_id, node, phase, status, started_at, finished_at, detail) VALUES
    ('e5', 'volume.data', 'destination_volume', 'done', '2026-12-02T10:00:01.000+00:00',
        '2026-12-02T10:00:02.000+00:00', NULL),
    ('e5', 'volume.data', 'attached', 'done', '2026-12-02T10:00:02.000+00:00',
        '2026-12-02T10:00:03.000+00:00', NULL),
    ('e5', 'volume.data', 'copied', 'running', '2026-12-02T10:00:03.000+00:00', NULL, NULL);
INSERT INTO copies (run_id, node, data, at) VALUES
    ('e5', 'volume.logs', '{json.dumps(COPY)}', '2026-12-02T10:00:08.000+00:00');
INSERT INTO temporaries (run_id, owner, cloud, kind, name, resource_id, state, at, data) VALUES
    ('e5', 'volume.data', 'source', 'attachment', '{VOLUME}@{HOST}', '{VOLUME}', 'created',
        '2026-12-02T10:00:02.500+00:00', '{json.dumps(ATTACHMENT)}');
INSERT INTO node_state VALUES ('volume.data', 'attached', '{json.dumps(NODE_DATA)}',
    '2026-12-02T10:00:03.000+00:00');
"""


# -- helpers ----------------------------------------------------------------------------------
def old_journal(path: Path, ddl: str, rows: str = "") -> Path:
    """A journal as an older tenantshift left it: WAL, its layout, its rows, user_version 0."""
    with closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(ddl + rows)
        db.commit()
        assert db.execute("PRAGMA user_version").fetchone()[0] == 0
    return path


Layout = dict[str, list[tuple[Any, ...]]]


def layout(path: Path) -> Layout:
    """Every table with its columns (name, type, not null, default, primary key), in order."""
    with closing(sqlite3.connect(path)) as db:
        tables = [
            str(row[0])
            for row in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name != 'sqlite_sequence' ORDER BY name"
            )
        ]
        return {
            table: [
                tuple(row[1:]) for row in db.execute("SELECT * FROM pragma_table_info(?)", (table,))
            ]
            for table in tables
        }


def pragma(path: Path, name: str) -> int:
    with closing(sqlite3.connect(path)) as db:
        return int(db.execute(f"PRAGMA {name}").fetchone()[0])


@contextmanager
def opened(path: Path) -> Iterator[Journal]:
    journal = Journal(path)
    try:
        yield journal
    finally:
        journal.close()


@pytest.fixture
def newest(tmp_path: Path) -> Layout:
    """The layout of a new journal: what every upgraded one must have, column for column."""
    path = tmp_path / "new" / "journal.sqlite"
    Journal(path).close()
    return layout(path)


# -- every layout upgrades to the newest ------------------------------------------------------
@pytest.mark.parametrize("version", range(1, len(LAYOUTS) + 1))
def test_the_steps_make_each_layout_before_versions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: int
) -> None:
    """Detection takes a journal that has layout N's tables and columns to be at version N:
    only true if steps 1..N make exactly layout N."""
    historical = layout(old_journal(tmp_path / "old.sqlite", LAYOUTS[version - 1]))
    monkeypatch.setattr(journal_module, "MIGRATIONS", journal_module.MIGRATIONS[:version])
    monkeypatch.setattr(journal_module, "SCHEMA_VERSION", version)
    Journal(tmp_path / "stepped.sqlite").close()
    assert layout(tmp_path / "stepped.sqlite") == historical


def test_a_new_journal_is_made_by_the_steps_at_the_newest_version(
    tmp_path: Path, newest: Layout
) -> None:
    path = tmp_path / "journal.sqlite"
    with opened(path) as journal:
        assert journal.runs() == []
    assert pragma(path, "user_version") == SCHEMA_VERSION == len(journal_module.MIGRATIONS)
    assert len(LAYOUTS) <= SCHEMA_VERSION
    assert layout(path) == newest
    # At least every table and column of the last layout before versions, in its order.
    last = layout(old_journal(tmp_path / "last.sqlite", LAYOUTS[-1]))
    for table, columns in last.items():
        assert newest[table][: len(columns)] == columns


@pytest.mark.parametrize("ddl", LAYOUTS, ids=["c53eb69", "46e9f7e", "2ae8eac"])
def test_a_journal_of_every_earlier_layout_opens_at_the_newest(
    tmp_path: Path, newest: Layout, ddl: str
) -> None:
    path = old_journal(tmp_path / "journal.sqlite", ddl)
    Journal(path).close()
    assert pragma(path, "user_version") == SCHEMA_VERSION
    assert layout(path) == newest


def test_layout_1_c53eb69_rows_still_read_and_resume(tmp_path: Path, newest: Layout) -> None:
    path = old_journal(tmp_path / "journal.sqlite", LAYOUT_1, ROWS_1)
    with opened(path) as journal:
        assert journal.runs() == [
            RunInfo(
                "a1",
                "2026-11-27T09:00:00.000+00:00",
                "2026-11-27T09:00:04.000+00:00",
                "succeeded",
                None,
                "digest-1",
            ),
            RunInfo("b2", "2026-11-27T10:00:00.000+00:00", None, "running", None, "digest-2"),
        ]
        assert journal.run_plan("a1") is None
        assert [s["node"] for s in journal.steps("b2")] == [
            "network.db",
            "network.db",
            "volume.data",
        ]
        assert journal.started_nodes() == {"network.app", "network.db", "volume.data"}
        # The attachment left by the killed run is still to undo; its data reads as empty.
        assert journal.pending_temporaries() == [
            {
                "seq": 2,
                "owner": "volume.data",
                "cloud": "source",
                "kind": "attachment",
                "name": f"{VOLUME}@{HOST}",
                "resource_id": VOLUME,
                "state": "created",
                "data": {},
            }
        ]
        assert journal.node_states() == {}
        # The next apply finds the killed run and what it left in doubt.
        run = journal.start_run("digest-3", plan=PLAN)
        assert journal.resumed_from == "b2"
        assert journal.in_doubt == {"volume.data"}
        assert [r.status for r in journal.runs()] == ["succeeded", "interrupted", "running"]
        assert journal.run_plan(run) == PLAN
        # What the later layouts added is written and read back.
        journal.advance("volume.data", "attached", NODE_DATA)
        assert journal.state_of("volume.data") == ("attached", NODE_DATA)
        seq = journal.phase_started("volume.data", "copied")
        journal.phase_finished(seq, "done")
        journal.record_copy("volume.data", COPY)
        assert [(p["phase"], p["status"]) for p in journal.phases([run])] == [("copied", "done")]
        assert [c["data"] for c in journal.copies([run])] == [COPY]
        journal.temporary_cleaned(2)
        assert journal.pending_temporaries() == []
    assert layout(path) == newest


def test_layout_2_46e9f7e_rows_still_read_and_resume(tmp_path: Path) -> None:
    path = old_journal(tmp_path / "journal.sqlite", LAYOUT_2, ROWS_2)
    with opened(path) as journal:
        # The half-done workload resumes after ``attached``, with the ids it had.
        assert journal.state_of("volume.data") == ("attached", NODE_DATA)
        assert journal.node_states() == {"volume.data": ("attached", NODE_DATA)}
        pending = journal.pending_temporaries()
        assert [(t["seq"], t["owner"], t["state"], t["data"]) for t in pending] == [
            (2, "volume.data", "created", ATTACHMENT),
            (1, "volume.old", "intended", {}),
        ]
        assert [t["seq"] for t in journal.pending_temporaries("volume.data")] == [2]
        assert journal.run_plan("c3") is None
        assert journal.phases(["c3"]) == [] and journal.copies(["c3"]) == []
        journal.start_run("digest-4")
        assert journal.resumed_from == "c3" and journal.in_doubt == {"volume.data"}
        journal.clear_state("volume.data")
        assert journal.state_of("volume.data") is None


def test_layout_3_2ae8eac_rows_still_read_and_resume(tmp_path: Path) -> None:
    path = old_journal(tmp_path / "journal.sqlite", LAYOUT_3, ROWS_3)
    with opened(path) as journal:
        assert journal.run_plan("e5") == PLAN
        assert [(p["phase"], p["status"], p["finished_at"]) for p in journal.phases(["e5"])] == [
            ("destination_volume", "done", "2026-12-02T10:00:02.000+00:00"),
            ("attached", "done", "2026-12-02T10:00:03.000+00:00"),
            ("copied", "running", None),
        ]
        (copy,) = journal.copies(["e5"])
        assert (copy["node"], copy["data"]) == ("volume.logs", COPY)
        assert journal.state_of("volume.data") == ("attached", NODE_DATA)
        (pending,) = journal.pending_temporaries("volume.data")
        assert (pending["name"], pending["data"]) == (f"{VOLUME}@{HOST}", ATTACHMENT)
        journal.start_run("digest-6")
        assert journal.resumed_from == "e5" and journal.in_doubt == {"volume.data"}


def test_a_journal_killed_inside_the_old_probing_upgrade_is_completed(
    tmp_path: Path, newest: Layout
) -> None:
    """2ae8eac's code opening a layout-1 journal created the missing tables, then added the
    missing columns, each committed alone: killed in between, the journal has layout 3's
    tables and layout 1's columns. It is at version 1, and the steps above must complete it."""
    path = old_journal(tmp_path / "journal.sqlite", LAYOUT_1, ROWS_1)
    with closing(sqlite3.connect(path)) as db:
        db.executescript(LAYOUT_3_SCHEMA)
    with opened(path) as journal:
        assert [t["seq"] for t in journal.pending_temporaries()] == [2]
        assert journal.run_plan("a1") is None
    assert pragma(path, "user_version") == SCHEMA_VERSION
    assert layout(path) == newest


# -- only the version drives upgrades once there is one ----------------------------------------
def test_reopening_is_a_no_op(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = old_journal(tmp_path / "journal.sqlite", LAYOUT_2, ROWS_2)
    Journal(path).close()
    before = (layout(path), pragma(path, "schema_version"), pragma(path, "user_version"))

    def must_not_run(*_: object) -> int:
        raise AssertionError("an up-to-date journal was inspected or migrated again")

    monkeypatch.setattr(journal_module, "_unversioned_layout", must_not_run)
    monkeypatch.setattr(
        journal_module, "MIGRATIONS", tuple(must_not_run for _ in journal_module.MIGRATIONS)
    )
    with opened(path) as journal:
        assert journal.state_of("volume.data") == ("attached", NODE_DATA)
    # The schema cookie counts every schema change: none.
    assert (layout(path), pragma(path, "schema_version"), pragma(path, "user_version")) == before


def test_a_versioned_journal_takes_only_the_steps_above_its_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """How the next step will be added: appended, run once on journals of the version below,
    never inspected again (steps 1-3 run again would fail on their ALTERs)."""
    path = old_journal(tmp_path / "journal.sqlite", LAYOUT_3, ROWS_3)
    Journal(path).close()

    def add_a_column(db: Any) -> None:
        db.execute("ALTER TABLE runs ADD COLUMN note TEXT")
        db.execute("UPDATE runs SET note = 'from step ' || ?", (SCHEMA_VERSION + 1,))

    def must_not_run(*_: object) -> int:
        raise AssertionError("a versioned journal was inspected")

    monkeypatch.setattr(journal_module, "_unversioned_layout", must_not_run)
    monkeypatch.setattr(journal_module, "MIGRATIONS", (*journal_module.MIGRATIONS, add_a_column))
    monkeypatch.setattr(journal_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with opened(path) as journal:
        assert journal.run_plan("e5") == PLAN
    assert pragma(path, "user_version") == SCHEMA_VERSION + 1
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT note FROM runs").fetchall() == [
            (f"from step {SCHEMA_VERSION + 1}",)
        ]


def test_a_failed_step_leaves_the_journal_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every step and the version in one transaction: a step that fails undoes the steps
    before it, so the journal is still at its old layout and version 0."""
    path = old_journal(tmp_path / "journal.sqlite", LAYOUT_1, ROWS_1)
    before = layout(path)

    def fails(db: Any) -> None:
        db.execute("CREATE TABLE half_done (x TEXT)")
        db.execute("SELECT * FROM no_such_table")

    monkeypatch.setattr(journal_module, "MIGRATIONS", (*journal_module.MIGRATIONS, fails))
    monkeypatch.setattr(journal_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(JournalError, match="no_such_table"):
        Journal(path)
    assert layout(path) == before
    assert pragma(path, "user_version") == 0
    monkeypatch.undo()
    with opened(path) as journal:  # and a good upgrade still goes through afterwards
        assert [r.run_id for r in journal.runs()] == ["a1", "b2"]


def test_a_journal_of_a_newer_tenantshift_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    Journal(path).close()
    with closing(sqlite3.connect(path)) as db:
        # A rollback journal, so that switching it to WAL would show in the file's bytes.
        db.execute("PRAGMA journal_mode=DELETE")
        db.execute("CREATE TABLE from_the_future (x TEXT)")
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        db.commit()
    before = path.read_bytes()
    with pytest.raises(JournalError, match=r"journal\.sqlite.*written by a newer tenantshift"):
        Journal(path)
    assert path.read_bytes() == before
    assert pragma(path, "user_version") == SCHEMA_VERSION + 1
    assert not path.with_name("journal.sqlite-wal").exists()


def test_an_up_to_date_journal_opens_while_an_apply_holds_the_write_lock(tmp_path: Path) -> None:
    """``status``, ``plan`` and ``report`` open the journal while an apply may be writing: a
    journal at the newest version is only read, never locked for an upgrade."""
    path = tmp_path / "journal.sqlite"
    with opened(path) as journal:
        journal.start_run("digest-1")
    with closing(sqlite3.connect(path, isolation_level=None)) as writer:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("UPDATE runs SET status = 'running'")
        with opened(path) as journal:
            assert [r.plan_digest for r in journal.runs()] == ["digest-1"]
        writer.execute("ROLLBACK")


def test_a_version_3_journal_gains_the_syncs_table_and_keeps_its_rows(tmp_path: Path) -> None:
    """Step 4 (warm migration's sync history) over a journal main wrote at version 3."""
    path = tmp_path / "journal.sqlite"
    with closing(sqlite3.connect(path)) as db:
        for step in journal_module.MIGRATIONS[:3]:
            step(db)  # type: ignore[arg-type]
        db.execute(
            "INSERT INTO copies (run_id, node, data, at) VALUES ('e5', 'volume.logs', ?, 'x')",
            (json.dumps(COPY),),
        )
        db.execute("PRAGMA user_version = 3")
        db.commit()
    with opened(path) as journal:
        (copy,) = journal.copies(["e5"])
        assert copy["data"] == COPY
        assert journal.syncs() == []
        journal.start_run("digest-7")
        journal.record_sync("server.web", {"phase": "sync", "generation": 1})
        journal.record_sync("server.db", {"phase": "sync", "generation": 1})
        journal.record_sync("server.web", {"phase": "cutover", "generation": 2})
        rows = journal.syncs("server.web")
        assert [(r["phase"], r["generation"], r["node"]) for r in rows] == [
            ("sync", 1, "server.web"),
            ("cutover", 2, "server.web"),
        ]
        assert len(journal.syncs()) == 3
    assert pragma(path, "user_version") == SCHEMA_VERSION == 4
