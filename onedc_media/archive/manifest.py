"""The archive manifest: one SQLite database (WAL) beside the outputs.

It is the job's only memory. Every source file under ``SRC`` has one row in ``items``;
a row says what the source was (path, size, mtime, SHA-256 of the bytes that were
encoded), what was written (output path, size, SHA-256), how (codec, its options, model
name and hashes, quality), what it cost (bpp) and how good it is (PSNR / MS-SSIM once
verified), and where it stands::

    pending --encode+rename+commit--> done --verify--> verified
       |                                |
       +--bad input--> failed           +--output damaged--> pending (error says why)

Exactly-once rests on one rule: an item's row becomes ``done`` only in a transaction
that commits *after* its output was fsynced and renamed into place. A row that is not
``done``/``verified`` is redone; a row that is, is never redone unless its source, its
settings or its output changed.

Schema version 1 (table ``schema_version``); :data:`SCHEMA` is the whole schema.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from onedc_media.errors import OdcError

__all__ = ["ITEM_COLUMNS", "SCHEMA", "SCHEMA_VERSION", "STATUSES", "Manifest", "ManifestError"]

SCHEMA_VERSION = 1

#: pending: to do; done: output committed; verified: output decoded and checked;
#: failed: the source cannot be archived (reason in ``error``); skipped: not archived
#: on purpose (``--videos skip``).
STATUSES = ("pending", "done", "failed", "verified", "skipped")

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    id              INTEGER PRIMARY KEY,
    source          TEXT NOT NULL UNIQUE,   -- path under SRC, '/'-separated
    kind            TEXT NOT NULL,          -- image | video | other
    src_size        INTEGER,                -- bytes, from fstat of the bytes encoded
    src_mtime_ns    INTEGER,
    src_sha256      TEXT,
    width           INTEGER,
    height          INTEGER,
    frames          INTEGER,                -- pictures in the output (1 for an image)
    output          TEXT NOT NULL,          -- path under DEST, '/'-separated
    out_size        INTEGER,
    out_sha256      TEXT,
    codec           TEXT,
    codec_params    TEXT,                   -- JSON: the stream header's codec parameters
    settings        TEXT,                   -- JSON: what the job asked for (changes -> redo)
    model_name      TEXT,
    model_sha256    TEXT,
    model_parsing_sha256 TEXT,
    quality         INTEGER,
    bpp             REAL,                   -- out_size * 8 / (width * height * frames)
    psnr            REAL,                   -- dB, RGB, set by verify (NULL: not measured)
    ms_ssim         REAL,
    status          TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ({", ".join(f"'{s}'" for s in STATUSES)})),
    error           TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_at      REAL NOT NULL,          -- unix seconds
    encoded_at      REAL,
    verified_at     REAL,
    updated_at      REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS items_status ON items (status);
CREATE TABLE IF NOT EXISTS runs (
    id          INTEGER PRIMARY KEY,
    started_at  REAL NOT NULL,
    finished_at REAL,
    engine      TEXT,
    settings    TEXT,
    done        INTEGER,
    failed      INTEGER
);
"""

ITEM_COLUMNS = (
    "id", "source", "kind", "src_size", "src_mtime_ns", "src_sha256", "width", "height",
    "frames", "output", "out_size", "out_sha256", "codec", "codec_params", "settings",
    "model_name", "model_sha256", "model_parsing_sha256", "quality", "bpp", "psnr", "ms_ssim",
    "status", "error", "attempts", "created_at", "encoded_at", "verified_at", "updated_at",
)  # fmt: skip

#: Columns an encode result may set (see :meth:`Manifest.commit_results`).
RESULT_COLUMNS = (
    "src_size", "src_mtime_ns", "src_sha256", "width", "height", "frames", "out_size",
    "out_sha256", "codec", "codec_params", "settings", "model_name", "model_sha256",
    "model_parsing_sha256", "quality", "bpp", "status", "error",
)  # fmt: skip


class ManifestError(OdcError, RuntimeError):
    """The manifest is missing, locked by another job, or of an unknown schema."""


@dataclass(frozen=True)
class Seen:
    """A source found by the walk (see :func:`onedc_media.archive.walk.walk_sources`)."""

    source: str
    kind: str
    output: str


class Manifest:
    """The manifest database of one archive.

    :param path: the ``.sqlite`` file.
    :param create: create it (and its schema) when missing; else raise ``ManifestError``.
    :param readonly: open read-only (status, tests); nothing is written.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, create: bool = False, readonly: bool = False
    ) -> None:
        self.path = os.fspath(path)
        if not os.path.exists(self.path) and not create:
            raise ManifestError(
                "no archive manifest here (run `onedc-media archive SRC DEST` first)",
                filename=self.path,
            )
        self.readonly = readonly
        if readonly:
            uri = "file:" + _uri_path(self.path) + "?mode=ro"
            self.db = sqlite3.connect(
                uri, uri=True, timeout=30, isolation_level=None, check_same_thread=False
            )
        else:
            # One thread at a time (the job hands the manifest to its writer thread).
            self.db = sqlite3.connect(
                self.path, timeout=30, isolation_level=None, check_same_thread=False
            )
        self.db.row_factory = sqlite3.Row
        try:
            if not readonly:
                self.db.execute("PRAGMA journal_mode=WAL")
                # FULL: a commit is on disk when commit() returns (each commit is a
                # group of items, so the fsync is paid once per group).
                self.db.execute("PRAGMA synchronous=FULL")
                self._ensure_schema()
            else:
                self._check_version()
        except sqlite3.DatabaseError as exc:
            self.db.close()
            raise ManifestError(f"not a readable manifest: {exc}", filename=self.path) from None

    # -- schema ----------------------------------------------------------------------
    def _ensure_schema(self) -> None:
        with self.transaction():
            for stmt in _statements(SCHEMA):
                self.db.execute(stmt)
            row = self.db.execute("SELECT version FROM schema_version").fetchone()
            if row is None:
                self.db.execute(
                    "INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,)
                )
            elif row[0] != SCHEMA_VERSION:
                raise ManifestError(
                    f"manifest schema version {row[0]}; this onedc-media reads version "
                    f"{SCHEMA_VERSION}",
                    filename=self.path,
                )

    def _check_version(self) -> None:
        try:
            row = self.db.execute("SELECT version FROM schema_version").fetchone()
        except sqlite3.OperationalError:
            raise ManifestError("not an archive manifest", filename=self.path) from None
        if row is None or row[0] != SCHEMA_VERSION:
            raise ManifestError(
                f"manifest schema version {row and row[0]}; this onedc-media "
                f"reads version {SCHEMA_VERSION}",
                filename=self.path,
            )

    @property
    def schema_version(self) -> int:
        return int(self.db.execute("SELECT version FROM schema_version").fetchone()[0])

    # -- plumbing --------------------------------------------------------------------
    def transaction(self) -> _Transaction:
        """``with manifest.transaction():`` -- BEGIN IMMEDIATE ... COMMIT (or ROLLBACK)."""
        return _Transaction(self.db)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Manifest:  # noqa: PYI034 - as the rest of the project
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- meta ------------------------------------------------------------------------
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else row[0]

    def set_meta(self, values: Mapping[str, str]) -> None:
        with self.transaction():
            self.db.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", list(values.items())
            )

    # -- runs ------------------------------------------------------------------------
    def start_run(self, engine: str, settings: Mapping[str, Any]) -> int:
        with self.transaction():
            cur = self.db.execute(
                "INSERT INTO runs (started_at, engine, settings) VALUES (?, ?, ?)",
                (time.time(), engine, json.dumps(settings, sort_keys=True)),
            )
            return int(cur.lastrowid)

    def finish_run(self, run: int, done: int, failed: int) -> None:
        with self.transaction():
            self.db.execute(
                "UPDATE runs SET finished_at = ?, done = ?, failed = ? WHERE id = ?",
                (time.time(), done, failed, run),
            )

    # -- items -----------------------------------------------------------------------
    def items(self, where: str = "", params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """Rows of ``items`` (``where`` is an SQL condition), ordered by source."""
        sql = "SELECT * FROM items" + (f" WHERE {where}" if where else "") + " ORDER BY source"
        return self.db.execute(sql, tuple(params)).fetchall()

    def item(self, item_id: int) -> sqlite3.Row | None:
        return self.db.execute("SELECT * FROM items WHERE id = ?", (item_id,)).fetchone()

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATUSES, 0)
        for status, n in self.db.execute("SELECT status, COUNT(*) FROM items GROUP BY status"):
            out[status] = n
        return out

    def insert_sources(self, seen: Iterable[Seen]) -> None:
        """Add new sources as ``pending`` (one transaction)."""
        now = time.time()
        with self.transaction():
            self.db.executemany(
                "INSERT INTO items (source, kind, output, status, created_at, updated_at) "
                "VALUES (?, ?, ?, 'pending', ?, ?)",
                [(s.source, s.kind, s.output, now, now) for s in seen],
            )

    def set_status(self, changes: Iterable[tuple[int, str, str | None]]) -> None:
        """``(id, status, error)`` for several items, in one transaction."""
        now = time.time()
        with self.transaction():
            self.db.executemany(
                "UPDATE items SET status = ?, error = ?, updated_at = ? WHERE id = ?",
                [(status, error, now, i) for i, status, error in changes],
            )

    def set_probe(self, probes: Iterable[tuple[int, int | None, int | None]]) -> None:
        """Record the size a header probe found (it orders the plan; see ``walk.probe``)."""
        with self.transaction():
            self.db.executemany(
                "UPDATE items SET width = ?, height = ? WHERE id = ?",
                [(w, h, i) for i, w, h in probes],
            )

    def pending(self, kind: str) -> Iterator[sqlite3.Row]:
        """Pending items of *kind*, ordered for batching: by picture size, then source.

        Read through a second connection, so the job can commit while iterating (WAL
        readers see the snapshot of when the query started).
        """
        # check_same_thread=False: an unfinished generator may be finalised (closed) by
        # the garbage collector on another thread; the connection is used by one thread
        # at a time.
        reader = sqlite3.connect(
            "file:" + _uri_path(self.path) + "?mode=ro", uri=True, timeout=30, check_same_thread=False
        )
        reader.row_factory = sqlite3.Row
        try:
            cur = reader.execute(
                "SELECT id, source, kind, output, width, height FROM items "
                "WHERE status = 'pending' AND kind = ? "
                "ORDER BY width IS NULL, width, height, source",
                (kind,),
            )
            yield from cur
        finally:
            reader.close()

    def commit_results(self, results: Iterable[Mapping[str, Any]]) -> None:
        """Record encode results (one transaction). Each mapping has ``id`` and any of
        :data:`RESULT_COLUMNS`; successful ones set ``status='done'`` and ``encoded_at``.
        Metrics of an earlier verification are cleared."""
        now = time.time()
        with self.transaction():
            for r in results:
                cols = [c for c in RESULT_COLUMNS if c in r]
                sets = ", ".join(f"{c} = ?" for c in cols)
                values = [r[c] for c in cols]
                extra = ", psnr = NULL, ms_ssim = NULL, verified_at = NULL"
                if r.get("status") == "done":
                    extra += ", encoded_at = ?"
                    values.append(now)
                self.db.execute(
                    f"UPDATE items SET {sets}{extra}, attempts = attempts + 1, updated_at = ? "
                    "WHERE id = ?",
                    (*values, now, r["id"]),
                )

    def set_verified(self, results: Iterable[tuple[int, float | None, float | None]]) -> None:
        """``(id, psnr, ms_ssim)`` of items whose output verified."""
        now = time.time()
        with self.transaction():
            self.db.executemany(
                "UPDATE items SET status = 'verified', error = NULL, psnr = ?, ms_ssim = ?, "
                "verified_at = ?, updated_at = ? WHERE id = ?",
                [(p, m, now, now, i) for i, p, m in results],
            )


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.nested = False

    def __enter__(self) -> sqlite3.Connection:
        self.nested = self.db.in_transaction
        if not self.nested:
            self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if self.nested:
            return
        if exc_type is None:
            self.db.execute("COMMIT")
        else:
            self.db.execute("ROLLBACK")


def _statements(script: str) -> Iterator[str]:
    """Split :data:`SCHEMA` into statements (``executescript`` would COMMIT on its own)."""
    buf = ""
    for line in script.splitlines():
        buf += line + "\n"
        if sqlite3.complete_statement(buf):
            yield buf.strip()
            buf = ""


def _uri_path(path: str) -> str:
    from urllib.parse import quote

    return quote(os.path.abspath(path))
