"""The CDC op: one pipeline's changes, as a stream that runs until stopped or as a catch-up.

An op (not a second asset) so that the UI's Materialize of a table always means a full load.
The pipeline is the run's ``cdc/pipeline`` tag (one job for every pipeline). Two stop
conditions on one loop (``engine/stream.py``):

* **stream** (tag ``cdc/stream=true``, the supervisor's runs): batches every
  ``CDC_COMMIT_INTERVAL_MS`` until the run is canceled, the pipeline is disabled or removed, the
  row stops following this run, or the run reaches ``CDC_STREAM_MAX_AGE_S``. ``cdc_status`` is
  ``ACTIVE`` from the start; a heartbeat (``cdc_heartbeat_at``, LSN, lag in bytes and seconds)
  every ``CDC_HEARTBEAT_S``; per changed table one materialization and every table's ``cdc_lag``
  evaluation at most every ``CDC_MATERIALIZE_EVERY_S``; nothing logged per batch. It ends
  ``STOPPED`` (SUCCESS or CANCELED) or ``FAILED``.
* **catch-up** (no tag: ``cdc-assets run NAME --phase cdc``, a hand launch): batches until one
  leaves nothing behind, then one report; ``ACTIVE`` on success as a batch run always was.
"""

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import dagster as dg

from cdc_assets.defs.bracket import RunBracket, status_bracket
from cdc_assets.defs.catalog import PipelineAssets
from cdc_assets.defs.hooks import record_failure_hook, record_success_hook
from cdc_assets.defs.resources import ControlDb, PostgresConnections
from cdc_assets.defs.run_status import error_text
from cdc_assets.defs.tags import TAG_PIPELINE, is_stream
from cdc_assets.domain import Mode, Phase
from cdc_assets.errors import ConfigError, ConnectError, PipelineNotFound
from cdc_assets.settings import Settings

if TYPE_CHECKING:
    from cdc_assets.control.repository import PipelineRepository
    from cdc_assets.engine.stream import BatchTally

Event = dg.AssetMaterialization | dg.AssetCheckEvaluation


def table_materializations(p: PipelineAssets, tally: "BatchTally") -> list[dg.AssetMaterialization]:
    """One materialization per table changed since the last report (none for the others).

    So "last updated" on a table asset means its data changed; a quiet table stays as it was.
    """
    keys = dict(zip(p.tables, p.target_keys(), strict=True))
    end_lsn = str(tally.last.end_lsn) if tally.last is not None else None
    out = []
    for table, (inserts, updates, deletes) in sorted(tally.by_table.items()):
        key = keys.get(table)
        if key is None:
            continue
        metadata: dict[str, Any] = {
            "dagster/table_name": f"{p.target_schema}.{table.name}",
            "cdc/phase": Phase.CDC.value,
            "cdc/inserts": inserts,
            "cdc/updates": updates,
            "cdc/deletes": deletes,
            "cdc/last_lsn": end_lsn,
        }
        if table in tally.truncated:
            metadata["cdc/truncated"] = True
        out.append(dg.AssetMaterialization(asset_key=dg.AssetKey(list(key)), metadata=metadata))
    return out


class StreamPulse:
    """The stream run's clock: when to beat, when to report, and whether to stop.

    Reads the row at most once per heartbeat, so a disable or removal stops the stream within
    ``CDC_HEARTBEAT_S`` plus one batch; a control database that cannot be reached only skips
    beats (the stream keeps applying; the supervisor tolerates a blind spot, see
    ``defs/supervisor.py``).
    """

    def __init__(
        self,
        context: dg.OpExecutionContext,
        repo: "PipelineRepository",
        bracket: RunBracket,
        settings: Settings,
    ) -> None:
        self.context = context
        self.repo = repo
        self.bracket = bracket
        self.settings = settings
        self.started = time.monotonic()
        self.last_beat = float("-inf")
        self.last_report = time.monotonic()
        self.reason: str | None = None

    def beat(self, tally: "BatchTally") -> None:
        """Write the heartbeat if one is due; stop the stream if the row no longer follows it."""
        now = time.monotonic()
        last = tally.last
        if last is None or now - self.last_beat < self.settings.cdc_heartbeat_s:
            return
        self.last_beat = now
        name = self.bracket.ident.pipeline
        try:
            ours = self.repo.record_cdc_heartbeat(
                name,
                run_id=self.bracket.ident.run_id,
                lsn=last.end_lsn,
                lag_bytes=last.lag_bytes,
                lag_seconds=last.lag_seconds,
            )
            row = self.repo.get(name)
        except PipelineNotFound:
            self.reason = "the pipeline was removed"
            return
        except ConnectError as exc:
            self.context.log.warning(f"heartbeat skipped: {exc.for_row()}")
            return
        if not ours:
            self.reason = "the row no longer follows this run (failed by the supervisor, or reset)"
        elif not row.enabled:
            self.reason = "the pipeline was disabled"
        elif tuple(row.tables) != tuple(self.bracket.row.tables):
            self.reason = "the pipeline's tables changed: the next stream run starts with them"

    def report_due(self) -> bool:
        """True once ``CDC_MATERIALIZE_EVERY_S`` passed since the last report."""
        now = time.monotonic()
        if now - self.last_report < self.settings.cdc_materialize_every_s:
            return False
        self.last_report = now
        return True

    def should_stop(self) -> bool:
        """The loop's stop condition: a reason found by :meth:`beat`, or the maximum age."""
        if self.reason is None and time.monotonic() - self.started >= (
            self.settings.cdc_stream_max_age_s
        ):
            self.reason = (
                f"the run reached CDC_STREAM_MAX_AGE_S ({self.settings.cdc_stream_max_age_s} s); "
                "the supervisor starts the next"
            )
        return self.reason is not None

    def on_retry(self, exc: BaseException, delay: float) -> None:
        """A transient failure inside the run: logged (warning), retried after ``delay``."""
        self.context.log.warning(f"{error_text(exc)}; retrying in {delay:.1f} s")


def report(p: PipelineAssets, tally: "BatchTally", settings: Settings) -> Iterator[Event]:
    """The changed tables' materializations, then every table's ``cdc_lag`` evaluation."""
    from cdc_assets.defs.checks import lag_results_for

    yield from table_materializations(p, tally)
    if tally.last is not None:
        yield from lag_results_for(p, tally.last.lag_bytes, settings)


@dg.op(
    name="cdc_stream",
    description="Streams the changes of the run's pipeline (tag cdc/pipeline) until stopped; "
    "without tag cdc/stream=true it catches up and ends.",
)
def cdc_stream(
    context: dg.OpExecutionContext, control: ControlDb, connections: PostgresConnections
) -> Iterator[Any]:
    """Lock, ACTIVE (stream), batches with heartbeats and reports; the final status at the end."""
    from cdc_assets.engine.stream import BatchTally, cdc_batches
    from cdc_assets.source.pending import IdleProbe

    repo = control.repository()
    settings = Settings.from_env()
    pipeline = context.run.tags.get(TAG_PIPELINE)
    if not pipeline:
        raise dg.Failure(
            f"run {context.run_id} has no {TAG_PIPELINE} tag: launch cdc_stream_job with tag "
            f"{TAG_PIPELINE}=NAME (the supervisor and `cdc-assets run NAME --phase cdc` do)"
        )
    stream = is_stream(context.run.tags)
    tally, total = BatchTally(), BatchTally()
    started = datetime.now(UTC)
    with status_bracket(
        context,
        repo,
        pipeline,
        Phase.CDC,
        success_message="op: stream stopped" if stream else "op: caught up",
    ) as run:
        if run.row.mode is not Mode.FULL_LOAD_AND_CDC:
            # Without this, a UI launch for a full_load pipeline fails on its missing slot.
            raise ConfigError(
                f"mode is {run.row.mode.value}: CDC applies to full_load_and_cdc pipelines",
                pipeline=pipeline,
                fix="set the mode to full_load_and_cdc and run a new full load",
            )
        p = PipelineAssets.of_row(run.row)
        resolved = connections.resolved(run.row.spec)
        pulse = StreamPulse(context, repo, run, settings)
        probe = IdleProbe(resolved.spec, resolved.source_url)
        try:
            for result in cdc_batches(
                resolved.spec,
                source_url=resolved.source_url,
                target_url=resolved.target_url,
                settings=settings,
                should_stop=pulse.should_stop if stream else None,
                progress=None if stream else context.log.info,
                on_retry=pulse.on_retry,
                idle=probe if stream else None,
            ):
                if result is not None:
                    tally.add(result)
                    total.add(result)
                if not stream:
                    continue
                pulse.beat(tally)
                if pulse.report_due():
                    yield from _report(context, p, tally.take(), settings)
        finally:
            probe.close()
        last = total.last
        if last is not None:
            # Written by the bracket once the body is done, before the final status.
            run.after_success.append(
                lambda: repo.record_cdc_progress(
                    pipeline,
                    run_id=run.ident.run_id,
                    lsn=last.end_lsn,
                    lag_bytes=last.lag_bytes,
                    lag_seconds=last.lag_seconds,
                )
            )
        if stream:
            context.log.info(f"stream stopped: {pulse.reason}")
    yield from _report(context, p, tally.take(), settings)
    metadata: dict[str, Any] = {
        "cdc/batches": total.batches,
        "cdc/changes": total.changes,
        "cdc/transactions": total.transactions,
        "cdc/seconds": round((datetime.now(UTC) - started).total_seconds(), 3),
    }
    if last is not None:
        metadata["cdc/end_lsn"] = str(last.end_lsn)
        metadata["cdc/lag_bytes"] = last.lag_bytes
    if total.warnings:
        metadata["cdc/warnings"] = "\n".join(total.warnings)
    if total.enum_labels_added:  # added on the target before the rows carrying them
        metadata["cdc/enum_labels_added"] = "\n".join(total.enum_labels_added)
    yield dg.Output(total.changes, metadata=metadata)


def _report(
    context: dg.OpExecutionContext, p: PipelineAssets, tally: "BatchTally", settings: Settings
) -> Iterator[Event]:
    """One report: warnings and a summary line, then the events (materializations, checks)."""
    for warning in tally.warnings:
        context.log.warning(warning)
    if tally.batches:
        last = tally.last
        assert last is not None
        context.log.info(
            f"{tally.batches} batches, {tally.transactions} transactions, {tally.changes} "
            f"changes up to {last.end_lsn}; lag {last.lag_bytes} bytes, "
            f"{last.lag_seconds:.2f} s"
        )
    yield from report(p, tally, settings)


cdc_stream_hooked = cdc_stream.with_hooks({record_success_hook, record_failure_hook})
