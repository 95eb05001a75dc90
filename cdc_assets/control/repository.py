"""``PipelineRepository``: the only code that writes ``public.pipelines``.

Every status change is one transaction: lock the row (``SELECT ... FOR UPDATE``), ask
``status.machine.decide`` whether the write may change it, update, and insert one
``pipeline_events`` row. Racing writers of the same transition queue on the row lock; the second
one reads the first one's result and is ignored, so there is one change and one event.
"""

import builtins
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Engine, delete, func, select, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from cdc_assets.asset_keys import pipeline_prefix, prefix_problem
from cdc_assets.control.conflicts import (
    AssetKeyConflict,
    Claim,
    SharedTargetConflict,
    refuse_new,
)
from cdc_assets.control.db import connect_errors, get_engine, libpq_url, normalise_url
from cdc_assets.control.locks import hold_pipeline_lock
from cdc_assets.control.models import Pipeline, PipelineEventRecord
from cdc_assets.control.rows import PipelineEvent, PipelineRow
from cdc_assets.domain import (
    CdcStatus,
    FullLoadStatus,
    InvalidName,
    Lsn,
    Phase,
    PipelineSpec,
    Writer,
    target_collision,
    validate_name,
)
from cdc_assets.errors import (
    MAX_ROW_ERROR,
    CdcError,
    ConfigError,
    ConnectError,
    PipelineNotFound,
)
from cdc_assets.secrets import BadReference, check_reference, scrub
from cdc_assets.status.machine import Outcome, PhaseState, ProposedWrite, Status, decide
from cdc_assets.status.reconcile import Write

__all__ = [
    "NO_RETRY",
    "AssetKeyConflict",
    "PipelineEvent",
    "PipelineExists",
    "PipelineRepository",
    "PipelineRow",
    "RetryPolicy",
    "SharedTargetConflict",
]

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long a status write waits for an unreachable control DB before giving up.

    A restart or failover of the control DB must not turn a finished load into a lost status
    write: the writer retries with doubling delays. Past the last attempt the
    :class:`ConnectError` propagates and the run-status sensors and the reconciler, which derive
    the row from Dagster's run record, write it once the database is back. Retrying is safe
    because every write is a guarded transition: one that did commit before the connection
    dropped is ignored the second time.
    """

    attempts: int = 5
    first_delay_s: float = 0.5
    max_delay_s: float = 4.0

    def delays(self) -> Iterator[float]:
        """The pauses between attempts (``attempts - 1`` of them)."""
        delay = self.first_delay_s
        for _ in range(max(0, self.attempts - 1)):
            yield delay
            delay = min(delay * 2, self.max_delay_s)


NO_RETRY = RetryPolicy(attempts=1)
ADD_LOCK_TIMEOUT_MS = 10_000
"""How long ``add`` waits for the table lock before giving up (status writes hold it briefly)."""


class PipelineExists(ConfigError):
    """``add`` of a name that is already taken."""

    kind = "exists"


def _exists(name: str) -> PipelineExists:
    return PipelineExists(
        "a pipeline with this name already exists",
        pipeline=name,
        fix="choose another name, or remove the existing pipeline first",
    )


def _not_found(name: str) -> PipelineNotFound:
    return PipelineNotFound(
        "no such pipeline in public.pipelines",
        pipeline=name,
        fix="list pipelines with `cdc-assets pipeline list`",
    )


def _row_error(error: str | None, fallback: str) -> str:
    return scrub(error or fallback)[:MAX_ROW_ERROR]


def validate_spec(spec: PipelineSpec) -> None:
    """Refuse a spec the control table must never hold; the database CHECKs are the last line."""
    try:
        validate_name(spec.name)
    except InvalidName as exc:
        raise ConfigError(str(exc), fix="rename the pipeline") from None
    if not spec.tables:
        raise ConfigError("a pipeline needs at least one table", pipeline=spec.name)
    displays = [t.display for t in spec.tables]
    dupes = sorted({d for d in displays if displays.count(d) > 1})
    if dupes:
        raise ConfigError(f"duplicate table {dupes[0]}", pipeline=spec.name)
    collision = target_collision(spec.tables)
    if collision is not None:
        raise ConfigError(collision, pipeline=spec.name)
    for role, ref in (("source", spec.source_url), ("target", spec.target_url)):
        try:
            check_reference(ref)
        except BadReference as exc:
            raise ConfigError(f"{role}_url: {exc}", pipeline=spec.name) from None
    if not spec.target_schema:
        raise ConfigError("target_schema is empty", pipeline=spec.name)


class PipelineRepository:
    """Reads and guarded writes of the control table through one cached engine per URL."""

    def __init__(self, engine: Engine, url: str, retry: RetryPolicy | None = None) -> None:
        self._engine = engine
        self._url = url
        self._retry = retry or RetryPolicy()

    @classmethod
    def from_url(
        cls, sqlalchemy_url: str, *, retry: RetryPolicy | None = None
    ) -> "PipelineRepository":
        """A repository over the process-wide engine for ``sqlalchemy_url``.

        ``postgresql://`` and ``postgres://`` URLs are normalised to ``postgresql+psycopg://``.
        """
        url = normalise_url(sqlalchemy_url)
        return cls(get_engine(url), url, retry)

    def _retrying(self, what: str, fn: Callable[[], T]) -> T:
        """Run one whole transaction ``fn``, again after a pause while the DB is unreachable."""
        delays = self._retry.delays()
        while True:
            try:
                return fn()
            except ConnectError as exc:
                delay = next(delays, None)
                if delay is None:
                    raise
                log.warning("%s: control DB unreachable, retrying in %.1fs: %s", what, delay, exc)
                time.sleep(delay)

    @property
    def url(self) -> str:
        """The normalised SQLAlchemy URL (with its password: never print it, redact it)."""
        return self._url

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with connect_errors(self._url), Session(self._engine) as session, session.begin():
            yield session

    @staticmethod
    def _locked(session: Session, name: str) -> Pipeline:
        found = session.scalars(
            select(Pipeline).where(Pipeline.name == name).with_for_update()
        ).one_or_none()
        if found is None:
            raise _not_found(name)
        return found

    # -- reads -------------------------------------------------------------------------------

    def get(self, name: str) -> PipelineRow:
        """The row named ``name``; :class:`PipelineNotFound` if there is none."""
        with self._session() as s:
            found = s.scalars(select(Pipeline).where(Pipeline.name == name)).one_or_none()
            if found is None:
                raise _not_found(name)
            return PipelineRow.from_model(found)

    def list(self) -> builtins.list[PipelineRow]:
        """Every pipeline, by name."""
        with self._session() as s:
            return [
                PipelineRow.from_model(p)
                for p in s.scalars(select(Pipeline).order_by(Pipeline.name))
            ]

    def events(self, name: str, limit: int = 20) -> builtins.list[PipelineEvent]:
        """The newest ``limit`` status changes of the pipeline currently named ``name``."""
        with self._session() as s:
            pid = s.scalar(select(Pipeline.id).where(Pipeline.name == name))
            if pid is None:
                raise _not_found(name)
            records = s.scalars(
                select(PipelineEventRecord)
                .where(PipelineEventRecord.pipeline_id == pid)
                .order_by(PipelineEventRecord.id.desc())
                .limit(limit)
            )
            return [PipelineEvent.from_model(e) for e in records]

    # -- definition changes ------------------------------------------------------------------

    def add(
        self,
        spec: PipelineSpec,
        *,
        asset_key_prefix: Sequence[str] | None = None,
        refuse_shared_target: bool = False,
    ) -> PipelineRow:
        """Insert a validated spec, refused if it clashes with a row already there.

        The clash checks (``control/conflicts.py``) and the insert are one transaction holding
        ``SHARE ROW EXCLUSIVE`` on ``public.pipelines``: it conflicts with itself and with every
        writer's row lock mode, so two concurrent adds (or an add and a hand-written ``INSERT``)
        cannot both pass the check on a table that holds neither. Status writers wait for it
        at most the few milliseconds an add takes.

        Args:
            spec: the pipeline (validated again here: the database CHECKs are the last line).
            asset_key_prefix: the row's ``asset_key_prefix`` (None: the default, its name).
            refuse_shared_target: also refuse a pipeline writing a target table another
                pipeline writes (same target URL as written, target schema and table name).
                ``cdc-assets pipeline add`` always asks for it.

        Raises:
            PipelineExists: the name is taken.
            ConfigError: a bad spec or prefix.
            AssetKeyConflict: an asset key of the new row is another pipeline's.
            SharedTargetConflict: see ``refuse_shared_target``.
        """
        validate_spec(spec)
        prefix = tuple(asset_key_prefix) if asset_key_prefix is not None else None
        if prefix is not None:
            problem = prefix_problem(prefix)
            if problem is not None:
                raise ConfigError(problem, pipeline=spec.name, fix="use parts like team/shop")
        claim = Claim(
            name=spec.name,
            prefix=pipeline_prefix(spec.name, prefix),
            tables=spec.tables,
            target_url=spec.target_url,
            target_schema=spec.target_schema,
        )
        try:
            with self._session() as s:
                self._lock_pipelines(s, spec.name)
                existing = [PipelineRow.from_model(p) for p in s.scalars(select(Pipeline))]
                if any(r.name == spec.name for r in existing):
                    raise _exists(spec.name)
                refuse_new(existing, claim, refuse_shared_target=refuse_shared_target)
                model = Pipeline(
                    name=spec.name,
                    source_url=spec.source_url,
                    target_url=spec.target_url,
                    tables=[t.display for t in spec.tables],
                    target_schema=spec.target_schema,
                    mode=spec.mode.value,
                    enabled=spec.enabled,
                    asset_key_prefix=list(prefix) if prefix is not None else None,
                )
                s.add(model)
                s.flush()
                s.refresh(model)
                return PipelineRow.from_model(model)
        except IntegrityError as exc:
            if "uq_pipelines_name" in str(exc.orig):
                raise _exists(spec.name) from None
            raise

    @staticmethod
    def _lock_pipelines(s: Session, name: str) -> None:
        """Take the add lock (see :meth:`add`), waiting at most ``ADD_LOCK_TIMEOUT``."""
        s.execute(text(f"SET LOCAL lock_timeout = '{ADD_LOCK_TIMEOUT_MS}ms'"))
        try:
            s.execute(text("LOCK TABLE public.pipelines IN SHARE ROW EXCLUSIVE MODE"))
        except OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) != "55P03":  # lock_not_available
                raise
            raise CdcError(
                f"public.pipelines stayed locked for {ADD_LOCK_TIMEOUT_MS} ms by another "
                "transaction; nothing was added",
                pipeline=name,
                fix="retry; if it persists, look for a long open transaction in pg_stat_activity",
            ) from None

    def remove(self, name: str) -> None:
        """Delete the row; its events stay (``pipeline_id`` set to NULL, name kept)."""
        with self._session() as s:
            result = s.execute(delete(Pipeline).where(Pipeline.name == name).returning(Pipeline.id))
            if result.first() is None:
                raise _not_found(name)

    def set_enabled(
        self,
        name: str,
        enabled: bool,
        *,
        writer: Writer = Writer.CLI,
        message: str = "disabled",
    ) -> PipelineRow:
        """Enable or disable sensor/schedule runs of the pipeline; disabling stops CDC.

        Disabling puts an ``ACTIVE`` or ``FAILED`` CDC in ``STOPPED`` in the same transaction
        (see :meth:`stop_cdc`); the slot is kept, so enabling lets the CDC sensor resume from the
        watermark. Enabling changes no status: ``STOPPED`` stays until the resumed batch's run
        reports.
        """
        with self._session() as s:
            p = self._locked(s, name)
            p.enabled = enabled
            if not enabled:
                self._stop_cdc_locked(s, p, writer=Writer(writer), message=message)
            s.flush()
            s.refresh(p)
            return PipelineRow.from_model(p)

    def stop_cdc(self, name: str, *, writer: Writer, message: str) -> bool:
        """Put the CDC of a *disabled* pipeline in ``STOPPED``; True if the status changed.

        For rows disabled by hand (``UPDATE pipelines SET enabled = false``), written by the CDC
        sensor once no run of the pipeline is going. Does nothing for an enabled row (it may have
        been enabled again since the caller read it) or a CDC that is not ACTIVE or FAILED.
        """
        with self._session() as s:
            p = self._locked(s, name)
            if p.enabled:
                return False
            return self._stop_cdc_locked(s, p, writer=Writer(writer), message=message)

    @staticmethod
    def _stop_cdc_locked(s: Session, p: Pipeline, *, writer: Writer, message: str) -> bool:
        """``STOPPED`` with a fence, as a reset does: the row then says STOPPED, not a run.

        The fence (``cdc_run_created_at`` = now, no run id) makes every write of a CDC run
        created before the stop stale, so a batch that was running when the pipeline was
        disabled cannot flip the row back to ACTIVE (or FAILED) when it ends; its committed
        progress (``cdc_lsn``) is still recorded. A run created after the stop (a person's UI
        launch, the batch the sensor resumes with after ``enable``) is newer and decides again.
        ``last_error`` is kept: the reason of a failure before the stop stays readable.
        """
        old = p.cdc_status
        if old not in (CdcStatus.ACTIVE, CdcStatus.FAILED):
            return False
        p.cdc_status = CdcStatus.STOPPED
        p.cdc_run_id = None
        p.cdc_run_created_at = s.scalar(select(func.clock_timestamp()))
        p.cdc_authority = writer.value
        _add_runless_event(
            s, p, Phase.CDC, old=old, new=CdcStatus.STOPPED, writer=writer, message=message
        )
        return True

    def refuse_load(self, name: str, *, reason: str, writer: Writer) -> bool:
        """``FAILED`` with ``reason`` for a row no full load can start from; True if changed.

        For a ``NOT_STARTED`` row the code location could not build assets for (a hand-written
        bad table name, asset keys another pipeline owns): no run can exist for it, so this is
        the only way its reason reaches ``last_error`` instead of the row waiting silently. The
        fence (``full_load_run_created_at`` = now, no run id), as ``stop_cdc`` sets one, lets
        the run after a fix (``pipeline reset``, a UI launch) decide again. Any other status is
        left alone: a loaded pipeline's CDC fails on the same reason by itself.
        """
        with self._session() as s:
            p = self._locked(s, name)
            if p.full_load_status is not FullLoadStatus.NOT_STARTED:
                return False
            p.full_load_status = FullLoadStatus.FAILED
            p.full_load_run_id = None
            p.full_load_run_created_at = s.scalar(select(func.clock_timestamp()))
            p.full_load_authority = Writer(writer).value
            p.last_error = scrub(reason)[:MAX_ROW_ERROR]
            _add_runless_event(
                s,
                p,
                Phase.FULL_LOAD,
                old=FullLoadStatus.NOT_STARTED,
                new=FullLoadStatus.FAILED,
                writer=Writer(writer),
                message=reason,
            )
            return True

    def reset(
        self, name: str, *, writer: Writer = Writer.CLI, message: str | None = None
    ) -> PipelineRow:
        """Both phases back to ``NOT_STARTED``, progress and errors cleared; an event per change.

        The reset time stays in ``*_run_created_at`` (with no run id) as a fence: events of runs
        created before the reset are stale and cannot bring the old status back.
        """
        with self._session() as s:
            p = self._locked(s, name)
            now = s.scalar(select(func.clock_timestamp()))
            note = message or "reset"
            for phase, old in ((Phase.FULL_LOAD, p.full_load_status), (Phase.CDC, p.cdc_status)):
                if old.value == FullLoadStatus.NOT_STARTED.value:
                    continue  # no status change, no event
                s.add(
                    PipelineEventRecord(
                        pipeline_id=p.id,
                        pipeline=p.name,
                        run_id=None,
                        phase=phase.value,
                        old_status=old.value,
                        new_status=FullLoadStatus.NOT_STARTED.value,
                        writer=writer.value,
                        message=note,
                    )
                )
            p.full_load_status = FullLoadStatus.NOT_STARTED
            p.full_load_started_at = None
            p.full_load_completed_at = None
            p.full_load_rows = None
            p.full_load_run_id = None
            p.full_load_run_created_at = now
            p.full_load_authority = writer.value
            p.cdc_status = CdcStatus.NOT_STARTED
            p.cdc_lsn = None
            p.cdc_lag_bytes = None
            p.cdc_progress_at = None
            p.cdc_run_id = None
            p.cdc_run_created_at = now
            p.cdc_authority = writer.value
            p.last_error = None
            s.flush()
            s.refresh(p)
            return PipelineRow.from_model(p)

    # -- guarded status writes ---------------------------------------------------------------

    def apply(self, write: Write, writer: Writer) -> bool:
        """Apply one guarded status write by ``writer``; True if the row now records it.

        Every status writer (op, hooks, run-status sensors, reconciler, CLI) hands over the same
        frozen :class:`Write`, so its fields are spelled once, not as a keyword list at each
        level. A status change writes one event; a newer run reporting the status the row already
        has moves only the run columns (no event: ``pipeline_events`` holds status changes).

        Full load: ``IN_PROGRESS`` stamps ``full_load_started_at``; ``COMPLETED`` stamps
        ``full_load_completed_at``, stores ``rows`` and clears ``last_error``. CDC: the next good
        batch of an ``ACTIVE`` pipeline updates the run columns and ``last_run_id`` without an
        ``ACTIVE -> ACTIVE`` event; ``ACTIVE`` clears ``last_error``. ``FAILED`` stores ``error``
        (scrubbed) in ``last_error``.

        Raises:
            ValueError: ``run_created_at`` is naive, or the status is not one of the phase's.
        """
        if write.run_created_at.tzinfo is None:
            raise ValueError("run_created_at must be timezone-aware (Dagster's create_timestamp)")
        full_load = write.phase is Phase.FULL_LOAD
        to: Status = FullLoadStatus(write.status) if full_load else CdcStatus(write.status)
        write = replace(write, status=to, rows=write.rows if full_load else None)
        writer = Writer(writer)
        return self._retrying(
            f"pipeline {write.pipeline} {write.phase} -> {to}",
            lambda: self._transition_once(write, writer),
        )

    def transition_full_load(
        self,
        name: str,
        to: FullLoadStatus,
        *,
        run_id: str,
        run_created_at: datetime,
        writer: Writer,
        error: str | None = None,
        rows: int | None = None,
        message: str | None = None,
    ) -> bool:
        """:meth:`apply` of a full-load write spelled out (tests, one-off callers)."""
        return self.apply(
            Write(
                pipeline=name,
                phase=Phase.FULL_LOAD,
                status=FullLoadStatus(to),
                run_id=run_id,
                run_created_at=run_created_at,
                error=error,
                message=message,
                rows=rows,
            ),
            writer,
        )

    def transition_cdc(
        self,
        name: str,
        to: CdcStatus,
        *,
        run_id: str,
        run_created_at: datetime,
        writer: Writer,
        error: str | None = None,
        message: str | None = None,
    ) -> bool:
        """:meth:`apply` of a CDC write spelled out (tests, one-off callers)."""
        return self.apply(
            Write(
                pipeline=name,
                phase=Phase.CDC,
                status=CdcStatus(to),
                run_id=run_id,
                run_created_at=run_created_at,
                error=error,
                message=message,
            ),
            writer,
        )

    def _transition_once(self, write: Write, writer: Writer) -> bool:
        phase, name, to = write.phase, write.pipeline, write.status
        run_id, run_created_at = write.run_id, write.run_created_at
        error, rows, message = write.error, write.rows, write.message
        with self._session() as s:
            p = self._locked(s, name)
            fields = _PhaseColumns(phase)
            current = PhaseState(
                status=fields.get(p, "status"),
                run_id=fields.get(p, "run_id"),
                run_created_at=fields.get(p, "run_created_at"),
                authority=_writer(fields.get(p, "authority")),
            )
            decision = decide(
                current, ProposedWrite(to, run_id, run_created_at, writer, stream=write.stream)
            )
            if decision.outcome is Outcome.IGNORE:
                log.debug(
                    "pipeline %s %s -> %s by %s ignored: %s",
                    name,
                    phase,
                    to,
                    writer,
                    decision.reason,
                )
                return False
            fields.set(p, "authority", writer.value)
            if decision.outcome is Outcome.TAKE_AUTHORITY:
                return False
            old = current.status
            follow = decision.outcome is Outcome.FOLLOW
            fields.set(p, "status", to)
            fields.set(p, "run_id", run_id)
            fields.set(p, "run_created_at", run_created_at)
            p.last_run_id = run_id
            now = s.scalar(select(func.clock_timestamp()))
            event_message = message
            if to is FullLoadStatus.IN_PROGRESS:
                p.full_load_started_at = now
                p.full_load_completed_at = None
            elif to is FullLoadStatus.COMPLETED:
                p.full_load_completed_at = now
                if rows is not None:
                    p.full_load_rows = rows
                p.last_error = None
            elif to is CdcStatus.ACTIVE:
                p.last_error = None
            elif to in (FullLoadStatus.FAILED, CdcStatus.FAILED):
                p.last_error = _row_error(error, f"run {run_id} failed (no reason reported)")
                event_message = message or p.last_error
            if follow:  # same status, newer run: the row follows it; events are status changes
                return True
            s.add(
                PipelineEventRecord(
                    pipeline_id=p.id,
                    pipeline=p.name,
                    run_id=run_id,
                    phase=phase.value,
                    old_status=old.value,
                    new_status=to.value,
                    writer=writer.value,
                    message=scrub(event_message or decision.reason)[:MAX_ROW_ERROR],
                )
            )
            return True

    def record_cdc_progress(
        self, name: str, *, run_id: str, lsn: Lsn, lag_bytes: int, lag_seconds: float = 0.0
    ) -> None:
        """Store the applied LSN (never moving it back) and the lag measured after a batch."""
        self._retrying(
            f"pipeline {name} cdc progress",
            lambda: self._record_cdc_progress_once(
                name, run_id=run_id, lsn=lsn, lag_bytes=lag_bytes, lag_seconds=lag_seconds
            ),
        )

    def _record_cdc_progress_once(
        self,
        name: str,
        *,
        run_id: str,
        lsn: Lsn,
        lag_bytes: int,
        lag_seconds: float,
        heartbeat: bool = False,
    ) -> bool:
        with self._session() as s:
            p = self._locked(s, name)
            if heartbeat and (p.cdc_run_id != run_id or p.cdc_status != CdcStatus.ACTIVE):
                return False
            current = Lsn(p.cdc_lsn) if p.cdc_lsn else None
            if current is None or Lsn(lsn) >= current:
                p.cdc_lsn = str(Lsn(lsn))
            p.cdc_lag_bytes = max(0, int(lag_bytes))
            p.cdc_lag_seconds = max(0.0, float(lag_seconds))
            now = s.scalar(select(func.clock_timestamp()))
            p.cdc_progress_at = now
            if heartbeat:
                p.cdc_heartbeat_at = now
            p.last_run_id = run_id
            return True

    def record_cdc_heartbeat(
        self, name: str, *, run_id: str, lsn: Lsn, lag_bytes: int, lag_seconds: float
    ) -> bool:
        """The stream run's pulse: progress, lag and ``cdc_heartbeat_at``, in one short update.

        Written only while the row follows this run and says ``ACTIVE``: False tells the run it
        is no longer the pipeline's stream (the supervisor failed it for a stale heartbeat, a
        reset fenced it), so it stops. One attempt, no retry: the loop must not stall on an
        unreachable control database; the next heartbeat tries again.
        """
        return self._record_cdc_progress_once(
            name,
            run_id=run_id,
            lsn=lsn,
            lag_bytes=lag_bytes,
            lag_seconds=lag_seconds,
            heartbeat=True,
        )

    # -- concurrency -------------------------------------------------------------------------

    def pipeline_lock(self, name: str, *, wait_s: float = 0.0) -> AbstractContextManager[None]:
        """Hold the pipeline's session advisory lock; :class:`ConcurrentRunError` if taken.

        Raised on entering the ``with``, not by this call; ``wait_s`` > 0 keeps asking that long.
        """
        with self._session() as s:
            pid = s.scalar(select(Pipeline.id).where(Pipeline.name == name))
        if pid is None:
            raise _not_found(name)
        return hold_pipeline_lock(
            libpq_url(self._url), pipeline=name, pipeline_id=pid, wait_s=wait_s
        )


class _PhaseColumns:
    """The guard columns of one phase by role, so one transition routine serves both phases."""

    def __init__(self, phase: Phase) -> None:
        self.prefix = "full_load_" if phase is Phase.FULL_LOAD else "cdc_"

    def get(self, p: Pipeline, role: str) -> Any:
        return getattr(p, self.prefix + role)

    def set(self, p: Pipeline, role: str, value: Any) -> None:
        setattr(p, self.prefix + role, value)


def _writer(value: str | None) -> Writer | None:
    return Writer(value) if value else None


def _add_runless_event(
    s: Session,
    p: Pipeline,
    phase: Phase,
    *,
    old: FullLoadStatus | CdcStatus,
    new: FullLoadStatus | CdcStatus,
    writer: Writer,
    message: str,
) -> None:
    """The history row of a status change no run made (a stop, a refused row): no run id."""
    s.add(
        PipelineEventRecord(
            pipeline_id=p.id,
            pipeline=p.name,
            run_id=None,
            phase=phase.value,
            old_status=old.value,
            new_status=new.value,
            writer=writer.value,
            message=scrub(message)[:MAX_ROW_ERROR],
        )
    )
