"""The local CircleCI's state: projects, pipelines, workflows, jobs, steps, logs, env vars.

Kept in SQLite inside the state dir so that a class's history survives ``down`` / ``up``, and
so that ``rollback-lab link`` (another process) can add a project while the server runs (WAL
mode). The HTTP layer (:mod:`helpers.localci.api`) only reads and writes through this module,
as moto's ``responses.py`` does with its ``models.py``. :class:`PipelineRecorder` is the
engine's :class:`~helpers.localci.observer.RunObserver` for one pipeline.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

DB_NAME = "localci.sqlite3"

# Statuses after which a job, a workflow or a step never changes again.
TERMINAL_JOB = frozenset(
    {"success", "failed", "not_run", "infrastructure_fail", "timedout", "canceled", "unauthorized"}
)
TERMINAL_WORKFLOW = frozenset({"success", "failed", "error", "canceled", "not_run", "unauthorized"})
INFRA_REASON = "Infrastructure fail: the local CircleCI stopped while this job was running."

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS projects (
    slug TEXT PRIMARY KEY COLLATE NOCASE,
    id TEXT NOT NULL,
    repo_path TEXT NOT NULL,
    created_at TEXT NOT NULL,
    next_pipeline_number INTEGER NOT NULL DEFAULT 1,
    next_job_number INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS env_vars (
    project_slug TEXT NOT NULL COLLATE NOCASE,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (project_slug, name)
);
CREATE TABLE IF NOT EXISTS pipelines (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    project_slug TEXT NOT NULL COLLATE NOCASE,
    number INTEGER NOT NULL,
    state TEXT NOT NULL,
    errors TEXT NOT NULL DEFAULT '[]',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    trigger_type TEXT NOT NULL,
    actor TEXT NOT NULL,
    parameters TEXT NOT NULL DEFAULT '{}',
    branch TEXT,
    tag TEXT,
    revision TEXT,
    commit_subject TEXT,
    commit_body TEXT,
    config_source TEXT NOT NULL DEFAULT '',
    config_compiled TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS pipelines_by_project ON pipelines (project_slug, number);
CREATE TABLE IF NOT EXISTS workflows (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    pipeline_id TEXT NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    stopped_at TEXT,
    started_by TEXT NOT NULL,
    canceled_by TEXT,
    rerun_of TEXT
);
CREATE INDEX IF NOT EXISTS workflows_by_pipeline ON workflows (pipeline_id);
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    workflow_id TEXT NOT NULL,
    project_slug TEXT NOT NULL COLLATE NOCASE,
    name TEXT NOT NULL,
    requires TEXT NOT NULL DEFAULT '[]',
    status TEXT NOT NULL,
    number INTEGER,
    created_at TEXT NOT NULL,
    queued_at TEXT,
    started_at TEXT,
    stopped_at TEXT,
    canceled_by TEXT,
    messages TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS jobs_by_workflow ON jobs (workflow_id);
CREATE INDEX IF NOT EXISTS jobs_by_number ON jobs (project_slug, number);
CREATE TABLE IF NOT EXISTS steps (
    job_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    exit_code INTEGER,
    start_time TEXT NOT NULL,
    end_time TEXT,
    PRIMARY KEY (job_id, idx)
);
CREATE TABLE IF NOT EXISTS step_output (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    message TEXT NOT NULL,
    time TEXT NOT NULL,
    type TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS output_by_step ON step_output (job_id, idx);
"""


def now() -> datetime:
    return datetime.now(timezone.utc)


def iso(at: datetime | None) -> str | None:
    """RFC 3339 in UTC with milliseconds and a ``Z``, as CircleCI writes times."""
    if at is None:
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    return at.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str | None) -> datetime | None:
    if text is None:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def mask_env_value(value: str) -> str:
    """CircleCI shows a project variable as ``xxxx`` and its last four characters."""
    return "xxxx" + value[-4:] if len(value) > 4 else "xxxx"


@dataclass(frozen=True)
class Project:
    slug: str
    id: str
    repo_path: Path
    created_at: str

    @property
    def vcs(self) -> str:
        return self.slug.split("/")[0]

    @property
    def org(self) -> str:
        return self.slug.split("/")[1]

    @property
    def repo(self) -> str:
        return self.slug.split("/")[2]


@dataclass(frozen=True)
class EnvVar:
    name: str
    value: str
    created_at: str


@dataclass(frozen=True)
class Pipeline:
    id: str
    project_slug: str
    number: int
    state: str
    errors: list[dict[str, str]]
    created_at: str
    updated_at: str
    trigger_type: str
    actor: str
    parameters: dict[str, Any]
    branch: str | None
    tag: str | None
    revision: str | None
    commit_subject: str | None
    commit_body: str | None
    config_source: str
    config_compiled: str


@dataclass(frozen=True)
class Workflow:
    id: str
    pipeline_id: str
    name: str
    status: str
    created_at: str
    stopped_at: str | None
    started_by: str
    canceled_by: str | None
    rerun_of: str | None


@dataclass(frozen=True)
class Job:
    id: str
    workflow_id: str
    project_slug: str
    name: str
    requires: list[str]
    status: str
    number: int | None
    created_at: str
    queued_at: str | None
    started_at: str | None
    stopped_at: str | None
    canceled_by: str | None
    messages: list[dict[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Step:
    job_id: str
    index: int
    name: str
    status: str
    exit_code: int | None
    start_time: str
    end_time: str | None


@dataclass(frozen=True)
class OutputLine:
    message: str
    time: str
    type: str


def _row_to(cls: type, row: sqlite3.Row, **overrides: Any) -> Any:
    data = {key: row[key] for key in row.keys() if key in cls.__dataclass_fields__}
    data.update(overrides)
    return cls(**data)


class Store:
    """One SQLite database, safe to share between the server's and the engine's threads."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            self.path, check_same_thread=False, isolation_level=None, timeout=30
        )
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    @classmethod
    def in_state_dir(cls, state_dir: Path) -> Store:
        return cls(Path(state_dir) / DB_NAME)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _one(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Row | None:
        with self._lock:
            return self._db.execute(sql, args).fetchone()

    def _all(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # --- meta -------------------------------------------------------------------------------

    def meta(self, key: str, default: str) -> str:
        """A value kept for the life of the state dir (the user's id), set once."""
        with self._tx() as db:
            db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", (key, default))
            return db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0]

    # --- projects and env vars --------------------------------------------------------------

    def link_project(self, slug: str, repo_path: Path) -> Project:
        """Create the project, or point an existing one at another repository."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO projects (slug, id, repo_path, created_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (slug) DO UPDATE SET repo_path = excluded.repo_path",
                (slug, str(uuid.uuid4()), str(repo_path), iso(now())),
            )
        project = self.get_project(slug)
        assert project is not None
        return project

    def get_project(self, slug: str) -> Project | None:
        row = self._one("SELECT * FROM projects WHERE slug = ?", (slug,))
        return _row_to(Project, row, repo_path=Path(row["repo_path"])) if row else None

    def list_projects(self) -> list[Project]:
        rows = self._all("SELECT * FROM projects ORDER BY slug")
        return [_row_to(Project, r, repo_path=Path(r["repo_path"])) for r in rows]

    def set_env_var(self, slug: str, name: str, value: str) -> EnvVar:
        created = iso(now())
        with self._tx() as db:
            db.execute(
                "INSERT INTO env_vars (project_slug, name, value, created_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (project_slug, name) DO UPDATE SET value = excluded.value",
                (slug, name, value, created),
            )
        env_var = self.get_env_var(slug, name)
        assert env_var is not None
        return env_var

    def get_env_var(self, slug: str, name: str) -> EnvVar | None:
        row = self._one("SELECT * FROM env_vars WHERE project_slug = ? AND name = ?", (slug, name))
        return _row_to(EnvVar, row) if row else None

    def list_env_vars(self, slug: str) -> list[EnvVar]:
        rows = self._all("SELECT * FROM env_vars WHERE project_slug = ? ORDER BY name", (slug,))
        return [_row_to(EnvVar, r) for r in rows]

    def delete_env_var(self, slug: str, name: str) -> bool:
        with self._tx() as db:
            cur = db.execute(
                "DELETE FROM env_vars WHERE project_slug = ? AND name = ?", (slug, name)
            )
            return cur.rowcount > 0

    def env_map(self, slug: str) -> dict[str, str]:
        return {v.name: v.value for v in self.list_env_vars(slug)}

    # --- pipelines --------------------------------------------------------------------------

    def create_pipeline(
        self,
        slug: str,
        *,
        actor: str,
        trigger_type: str = "api",
        branch: str | None = None,
        tag: str | None = None,
        revision: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        commit_subject: str | None = None,
        commit_body: str | None = None,
        state: str = "created",
    ) -> Pipeline:
        """Allocate the project's next pipeline number and record the trigger."""
        pipeline_id = str(uuid.uuid4())
        at = iso(now())
        with self._tx() as db:
            number = db.execute(
                "SELECT next_pipeline_number FROM projects WHERE slug = ?", (slug,)
            ).fetchone()[0]
            db.execute(
                "UPDATE projects SET next_pipeline_number = ? WHERE slug = ?", (number + 1, slug)
            )
            db.execute(
                "INSERT INTO pipelines (id, project_slug, number, state, created_at, updated_at, "
                "trigger_type, actor, parameters, branch, tag, revision, commit_subject, "
                "commit_body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    pipeline_id,
                    slug,
                    number,
                    state,
                    at,
                    at,
                    trigger_type,
                    actor,
                    json.dumps(dict(parameters or {})),
                    branch,
                    tag,
                    revision,
                    commit_subject,
                    commit_body,
                ),
            )
        pipeline = self.get_pipeline(pipeline_id)
        assert pipeline is not None
        return pipeline

    def set_pipeline_config(self, pipeline_id: str, source: str, compiled: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE pipelines SET config_source = ?, config_compiled = ?, updated_at = ? "
                "WHERE id = ?",
                (source, compiled, iso(now()), pipeline_id),
            )

    def set_pipeline_vcs(
        self, pipeline_id: str, revision: str, subject: str | None, body: str | None
    ) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE pipelines SET revision = ?, commit_subject = ?, commit_body = ?, "
                "updated_at = ? WHERE id = ?",
                (revision, subject, body, iso(now()), pipeline_id),
            )

    def set_pipeline_state(
        self, pipeline_id: str, state: str, errors: Sequence[Mapping[str, str]] | None = None
    ) -> None:
        with self._tx() as db:
            if errors is None:
                db.execute(
                    "UPDATE pipelines SET state = ?, updated_at = ? WHERE id = ?",
                    (state, iso(now()), pipeline_id),
                )
            else:
                db.execute(
                    "UPDATE pipelines SET state = ?, errors = ?, updated_at = ? WHERE id = ?",
                    (state, json.dumps([dict(e) for e in errors]), iso(now()), pipeline_id),
                )

    def _pipeline(self, row: sqlite3.Row | None) -> Pipeline | None:
        if row is None:
            return None
        return _row_to(
            Pipeline,
            row,
            errors=json.loads(row["errors"]),
            parameters=json.loads(row["parameters"]),
        )

    def get_pipeline(self, pipeline_id: str) -> Pipeline | None:
        return self._pipeline(self._one("SELECT * FROM pipelines WHERE id = ?", (pipeline_id,)))

    def get_pipeline_by_number(self, slug: str, number: int) -> Pipeline | None:
        row = self._one(
            "SELECT * FROM pipelines WHERE project_slug = ? AND number = ?", (slug, number)
        )
        return self._pipeline(row)

    def list_pipelines(
        self, slug: str, *, branch: str | None = None, offset: int = 0, limit: int = 20
    ) -> list[Pipeline]:
        """Newest first, as CircleCI lists them."""
        sql = "SELECT * FROM pipelines WHERE project_slug = ?"
        args: list[Any] = [slug]
        if branch is not None:
            sql += " AND branch = ?"
            args.append(branch)
        sql += " ORDER BY number DESC LIMIT ? OFFSET ?"
        args += [limit, offset]
        return [p for p in map(self._pipeline, self._all(sql, args)) if p is not None]

    # --- workflows, jobs, steps -------------------------------------------------------------

    def get_workflow(self, workflow_id: str) -> Workflow | None:
        row = self._one("SELECT * FROM workflows WHERE id = ?", (workflow_id,))
        return _row_to(Workflow, row) if row else None

    def list_workflows(
        self, pipeline_id: str, *, offset: int = 0, limit: int = 20
    ) -> list[Workflow]:
        rows = self._all(
            "SELECT * FROM workflows WHERE pipeline_id = ? ORDER BY seq LIMIT ? OFFSET ?",
            (pipeline_id, limit, offset),
        )
        return [_row_to(Workflow, r) for r in rows]

    def set_workflow_canceled_by(self, workflow_id: str, user_id: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE workflows SET canceled_by = ? WHERE id = ?", (user_id, workflow_id))

    def _job(self, row: sqlite3.Row | None) -> Job | None:
        if row is None:
            return None
        return _row_to(
            Job, row, requires=json.loads(row["requires"]), messages=json.loads(row["messages"])
        )

    def get_job(self, job_id: str) -> Job | None:
        return self._job(self._one("SELECT * FROM jobs WHERE id = ?", (job_id,)))

    def get_job_by_number(self, slug: str, number: int) -> Job | None:
        return self._job(
            self._one("SELECT * FROM jobs WHERE project_slug = ? AND number = ?", (slug, number))
        )

    def list_jobs(self, workflow_id: str, *, offset: int = 0, limit: int = 100) -> list[Job]:
        rows = self._all(
            "SELECT * FROM jobs WHERE workflow_id = ? ORDER BY seq LIMIT ? OFFSET ?",
            (workflow_id, limit, offset),
        )
        return [j for j in map(self._job, rows) if j is not None]

    def set_job_canceled_by(self, job_id: str, user_id: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE jobs SET canceled_by = ? WHERE id = ?", (user_id, job_id))

    def list_steps(self, job_id: str) -> list[Step]:
        rows = self._all("SELECT * FROM steps WHERE job_id = ? ORDER BY idx", (job_id,))
        return [_row_to(Step, r, index=r["idx"]) for r in rows]

    def step_output(self, job_id: str, index: int) -> list[OutputLine]:
        rows = self._all(
            "SELECT message, time, type FROM step_output WHERE job_id = ? AND idx = ? ORDER BY seq",
            (job_id, index),
        )
        return [_row_to(OutputLine, r) for r in rows]

    def has_output(self, job_id: str, index: int) -> bool:
        row = self._one(
            "SELECT 1 FROM step_output WHERE job_id = ? AND idx = ? LIMIT 1", (job_id, index)
        )
        return row is not None

    # --- recovery ---------------------------------------------------------------------------

    def fail_interrupted(self, reason: str = INFRA_REASON) -> int:
        """Jobs the server stopped under: infrastructure_fail, never left `running`.

        Called when the server closes and again when it opens (after a crash or a kill), so a
        class's history never shows a job that runs forever. Returns how many jobs it ended.
        """
        with self._tx() as db:
            ended = self._end_unfinished(db, None, reason)
            db.execute(
                "UPDATE pipelines SET state = 'errored', updated_at = ?, errors = ? "
                "WHERE state IN ('pending', 'setup-pending', 'setup')",
                (iso(now()), json.dumps([{"type": "other", "message": reason}])),
            )
            return ended

    def fail_unfinished(self, workflow_ids: Sequence[str], reason: str) -> int:
        """The same for the workflows of one run (the engine failed under them)."""
        with self._tx() as db:
            return self._end_unfinished(db, list(workflow_ids), reason)

    def _end_unfinished(
        self, db: sqlite3.Connection, workflow_ids: list[str] | None, reason: str
    ) -> int:
        at = iso(now())
        message = json.dumps([{"type": "error", "message": reason, "reason": "infrastructure"}])
        in_terminal = ",".join("?" * len(TERMINAL_JOB))
        sql = f"SELECT id, status FROM jobs WHERE status NOT IN ({in_terminal})"
        args: list[Any] = list(TERMINAL_JOB)
        wf_sql = ""
        if workflow_ids is not None:
            wf_sql = f" AND workflow_id IN ({','.join('?' * len(workflow_ids))})"
            if not workflow_ids:
                return 0
        jobs = db.execute(sql + wf_sql, (*args, *(workflow_ids or []))).fetchall()
        for job in jobs:
            # Jobs that had started (or were waiting for a slot) failed; the rest never ran.
            started = job["status"] in ("running", "queued")
            db.execute(
                "UPDATE jobs SET status = ?, stopped_at = COALESCE(stopped_at, ?), messages = ? "
                "WHERE id = ?",
                (
                    "infrastructure_fail" if started else "not_run",
                    at,
                    message if started else "[]",
                    job["id"],
                ),
            )
            running = db.execute(
                "SELECT idx FROM steps WHERE job_id = ? AND status = 'running'", (job["id"],)
            ).fetchall()
            for step in running:
                db.execute(
                    "UPDATE steps SET status = 'failed', end_time = ? WHERE job_id = ? AND idx = ?",
                    (at, job["id"], step["idx"]),
                )
                db.execute(
                    "INSERT INTO step_output (job_id, idx, message, time, type) "
                    "VALUES (?, ?, ?, ?, 'err')",
                    (job["id"], step["idx"], reason + "\n", at),
                )
        in_terminal_wf = ",".join("?" * len(TERMINAL_WORKFLOW))
        wf_where = "id" if workflow_ids is not None else None
        sql = (
            "UPDATE workflows SET status = 'failed', stopped_at = COALESCE(stopped_at, ?) "
            f"WHERE status NOT IN ({in_terminal_wf})"
        )
        wf_args: list[Any] = [at, *TERMINAL_WORKFLOW]
        if wf_where is not None and workflow_ids:
            sql += f" AND id IN ({','.join('?' * len(workflow_ids))})"
            wf_args += workflow_ids
        db.execute(sql, wf_args)
        return len(jobs)

    # --- what the engine reports ------------------------------------------------------------

    def recorder(self, pipeline_id: str, project_slug: str, *, rerun_of: str | None = None):
        return PipelineRecorder(self, pipeline_id, project_slug, rerun_of=rerun_of)

    def _workflow_created(
        self,
        pipeline_id: str,
        workflow_id: str,
        name: str,
        created_at: datetime,
        started_by: str,
        rerun_of: str | None,
        mark_created: bool,
    ) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO workflows (id, pipeline_id, name, status, created_at, started_by, "
                "rerun_of) VALUES (?, ?, ?, 'running', ?, ?, ?)",
                (workflow_id, pipeline_id, name, iso(created_at), started_by, rerun_of),
            )
            if mark_created:
                self._mark_created(db, pipeline_id)

    def mark_pipeline_created(self, pipeline_id: str) -> None:
        with self._tx() as db:
            self._mark_created(db, pipeline_id)

    @staticmethod
    def _mark_created(db: sqlite3.Connection, pipeline_id: str) -> None:
        db.execute(
            "UPDATE pipelines SET state = 'created', updated_at = ? "
            "WHERE id = ? AND state IN ('pending', 'setup-pending', 'setup')",
            (iso(now()), pipeline_id),
        )

    def _job_created(
        self,
        slug: str,
        workflow_id: str,
        job_id: str,
        name: str,
        requires: Sequence[str],
        status: str,
    ) -> None:
        at = iso(now())
        with self._tx() as db:
            db.execute(
                "INSERT INTO jobs (id, workflow_id, project_slug, name, requires, status, "
                "created_at, queued_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job_id,
                    workflow_id,
                    slug,
                    name,
                    json.dumps(list(requires)),
                    status,
                    at,
                    at if status == "queued" else None,
                ),
            )

    def _job_number(self, slug: str, job_id: str) -> int:
        with self._tx() as db:
            row = db.execute("SELECT number FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is not None and row["number"] is not None:
                return int(row["number"])
            number = db.execute(
                "SELECT next_job_number FROM projects WHERE slug = ?", (slug,)
            ).fetchone()[0]
            db.execute("UPDATE projects SET next_job_number = ? WHERE slug = ?", (number + 1, slug))
            db.execute("UPDATE jobs SET number = ? WHERE id = ?", (number, job_id))
            return int(number)

    def _job_status(self, job_id: str, status: str, at: datetime) -> None:
        stamp = iso(at)
        with self._tx() as db:
            row = db.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None or row["status"] in TERMINAL_JOB:
                return  # e.g. already ended by fail_interrupted while the engine stopped
            sets = ["status = ?"]
            args: list[Any] = [status]
            if status == "queued":
                sets.append("queued_at = COALESCE(queued_at, ?)")
                args.append(stamp)
            elif status == "running":
                sets.append("queued_at = COALESCE(queued_at, ?)")
                sets.append("started_at = COALESCE(started_at, ?)")
                args += [stamp, stamp]
            elif status in TERMINAL_JOB:
                sets.append("stopped_at = ?")
                args.append(stamp)
            db.execute(f"UPDATE jobs SET {', '.join(sets)} WHERE id = ?", (*args, job_id))

    def _step_started(self, job_id: str, index: int, name: str, at: datetime) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO steps (job_id, idx, name, status, start_time) "
                "VALUES (?, ?, ?, 'running', ?)",
                (job_id, index, name, iso(at)),
            )

    def _step_output(self, job_id: str, index: int, message: str, at: datetime, type: str) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO step_output (job_id, idx, message, time, type) VALUES (?, ?, ?, ?, ?)",
                (job_id, index, message, iso(at), type),
            )

    def _step_finished(
        self, job_id: str, index: int, status: str, exit_code: int | None, at: datetime
    ) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE steps SET status = ?, exit_code = ?, end_time = ? "
                "WHERE job_id = ? AND idx = ? AND status = 'running'",
                (status, exit_code, iso(at), job_id, index),
            )

    def _workflow_finished(self, workflow_id: str, status: str, at: datetime) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE workflows SET status = ?, stopped_at = ? WHERE id = ? AND status NOT IN "
                "({})".format(",".join("?" * len(TERMINAL_WORKFLOW))),
                (status, iso(at), workflow_id, *TERMINAL_WORKFLOW),
            )


class PipelineRecorder:
    """The engine's observer for one pipeline (or one rerun of a workflow of it).

    The engine reports workflows without their pipeline, so one recorder is made per run.
    Once :meth:`detach` is called (the server is closing) reports are dropped: the store has
    already ended those jobs as ``infrastructure_fail`` and a late ``canceled`` must not undo it.
    """

    def __init__(
        self, store: Store, pipeline_id: str, project_slug: str, *, rerun_of: str | None = None
    ) -> None:
        self.store = store
        self.pipeline_id = pipeline_id
        self.project_slug = project_slug
        self.rerun_of = rerun_of
        self.started_by = store.meta("user_id", str(uuid.uuid4()))
        self.workflow_ids: list[str] = []
        # The pipeline turns `created` once this many workflows exist (None: at the first), so
        # a client never sees a `created` pipeline whose workflows are still being made.
        self.expected_workflows: int | None = None
        self.on_workflow_created: Callable[[str], None] | None = None
        self._detached = threading.Event()

    def detach(self) -> None:
        self._detached.set()

    @property
    def attached(self) -> bool:
        return not self._detached.is_set()

    def workflow_created(self, workflow_id: str, name: str, created_at: datetime) -> None:
        if self.attached:
            self.workflow_ids.append(workflow_id)
            expected = self.expected_workflows
            self.store._workflow_created(
                self.pipeline_id,
                workflow_id,
                name,
                created_at,
                self.started_by,
                self.rerun_of,
                mark_created=expected is None or len(self.workflow_ids) >= expected,
            )
            if self.on_workflow_created is not None:
                self.on_workflow_created(workflow_id)

    def job_created(
        self,
        workflow_id: str,
        job_id: str,
        name: str,
        requires: Sequence[str],
        status: str,
    ) -> None:
        if self.attached:
            self.store._job_created(self.project_slug, workflow_id, job_id, name, requires, status)

    def job_number(self, job_id: str) -> int:
        return self.store._job_number(self.project_slug, job_id)

    def job_status(self, job_id: str, status: str, at: datetime) -> None:
        if self.attached:
            self.store._job_status(job_id, status, at)

    def step_started(self, job_id: str, index: int, name: str, at: datetime) -> None:
        if self.attached:
            self.store._step_started(job_id, index, name, at)

    def step_output(
        self, job_id: str, index: int, message: str, at: datetime, type: str = "out"
    ) -> None:
        if self.attached:
            self.store._step_output(job_id, index, message, at, type)

    def step_finished(
        self, job_id: str, index: int, status: str, exit_code: int | None, at: datetime
    ) -> None:
        if self.attached:
            self.store._step_finished(job_id, index, status, exit_code, at)

    def workflow_finished(self, workflow_id: str, status: str, at: datetime) -> None:
        if self.attached:
            self.store._workflow_finished(workflow_id, status, at)
