"""``cdc-assets``: the front door for operators (design.md section 5).

Exit codes: 0 success, 1 the command could not do its job (database unreachable, a run holds the
pipeline, a typed :class:`CdcError`), 2 bad input (nothing written). Expected failures print one
line to stderr, never a traceback and never a password: URLs are shown through ``redact_url``.

Heavy layers (SQLAlchemy, psycopg, Dagster) are imported inside the commands, so ``--help`` and
input validation stay fast and the module has no import-time work.
"""

import argparse
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, NoReturn

from cdc_assets import settings
from cdc_assets.asset_keys import prefix_problem
from cdc_assets.domain import (
    MAX_IDENTIFIER_BYTES,
    CdcStatus,
    InvalidName,
    Mode,
    PipelineSpec,
    TableRef,
    target_collision,
    validate_name,
)
from cdc_assets.errors import CdcError
from cdc_assets.secrets import BadReference, check_reference, redact_url, scrub

if TYPE_CHECKING:
    from cdc_assets.control.repository import PipelineRepository
    from cdc_assets.control.rows import PipelineRow

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
ERROR_WIDTH = 60


class UsageError(Exception):
    """Bad input: the message names the offending field; exit code 2, nothing written."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports instead of exiting, so ``main`` always returns an exit code."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


# -- input validation (pure) ------------------------------------------------------------------

_PLAIN_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")


def _field_error(field: str, value: str, problem: str) -> UsageError:
    return UsageError(f'{field} "{redact_url(value)}": {problem}')


def parse_schema(text: str) -> str:
    """A target schema as the catalog stores it: plain words fold to lower case; quotes keep it."""
    raw = text.strip()
    if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
        inner = raw[1:-1]
        if '"' in inner.replace('""', ""):
            raise InvalidName("stray quote inside a quoted identifier")
        ident = inner.replace('""', '"')
    elif _PLAIN_IDENT.fullmatch(raw):
        ident = raw.lower()
    else:
        raise InvalidName("use one identifier (quote it if it is not a plain word)")
    if not ident:
        raise InvalidName("empty identifier")
    if "\x00" in ident:
        raise InvalidName("NUL character")
    if len(ident.encode()) > MAX_IDENTIFIER_BYTES:
        raise InvalidName(f"longer than {MAX_IDENTIFIER_BYTES} bytes")
    if ident.startswith("pg_"):
        raise InvalidName("schema names starting with pg_ are reserved by PostgreSQL")
    return ident


def parse_prefix(text: str) -> tuple[str, ...]:
    """``--asset-key-prefix a/b`` as the key parts ``("a", "b")``, checked by ``asset_keys``."""
    parts = tuple(p.strip() for p in text.strip().split("/"))
    problem = prefix_problem(parts if text.strip() else ())
    if problem is not None:
        raise _field_error(
            "--asset-key-prefix",
            text,
            f"{problem.replace('asset_key_prefix', 'prefix')}; write parts separated by /, "
            "e.g. team/shop",
        )
    return parts


def build_spec(
    name: str,
    *,
    source: str,
    target: str,
    tables: Sequence[str],
    mode: str,
    target_schema: str,
    enabled: bool = True,
) -> PipelineSpec:
    """Validate every field of ``pipeline add``; the first bad one raises :class:`UsageError`."""
    try:
        validate_name(name)
    except InvalidName as exc:
        raise _field_error("NAME", name, str(exc)) from None
    for flag, ref in (("--source", source), ("--target", target)):
        try:
            check_reference(ref)
        except BadReference as exc:
            raise _field_error(flag, ref, str(exc)) from None
    if not tables:
        raise UsageError("--table: at least one table is required")
    refs: list[TableRef] = []
    for text in tables:
        try:
            table = TableRef.parse(text)
        except InvalidName as exc:
            raise _field_error("--table", text, str(exc)) from None
        if table in refs:
            raise _field_error("--table", text, f"duplicate table (same as {table.display})")
        refs.append(table)
    collision = target_collision(refs)
    if collision is not None:
        raise UsageError(f"--table: {collision}")
    try:
        parsed_mode = Mode(mode)
    except ValueError:
        choices = " or ".join(m.value for m in Mode)
        raise _field_error("--mode", mode, f"use {choices}") from None
    try:
        schema = parse_schema(target_schema)
    except InvalidName as exc:
        raise _field_error("--target-schema", target_schema, str(exc)) from None
    return PipelineSpec(
        name=name,
        source_url=source.strip(),
        target_url=target.strip(),
        tables=tuple(refs),
        target_schema=schema,
        mode=parsed_mode,
        enabled=enabled,
    )


# -- output helpers -----------------------------------------------------------------------------


def _ts(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S%z") if value else "-"


def _short(text: str | None, width: int = ERROR_WIDTH) -> str:
    if not text:
        return ""
    line = " ".join(scrub(text).split())
    return line if len(line) <= width else line[: width - 3] + "..."


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces; the last column is not padded."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for r in [header, *rows]:
        cells = [c.ljust(w) for c, w in zip(r[:-1], widths[:-1], strict=True)] + [r[-1]]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _out(text: str = "") -> None:
    print(text, file=sys.stdout)


def _err(text: str) -> None:
    print(scrub(text), file=sys.stderr)


def _request_reload() -> None:
    """Best effort after a write that changes the assets: the code location reloads now.

    Never fails the command: the row is written, and the definitions sync sensor reloads the
    location within a tick anyway.
    """
    from cdc_assets.reload import request_reload

    outcome = request_reload(timeout=10.0)
    if not outcome.ok and not outcome.pending:
        _err(f"note: {outcome.detail}; the definitions sync sensor will reload the assets")


# -- commands -----------------------------------------------------------------------------------


@dataclass
class _Context:
    control_url: str | None

    def url(self) -> str:
        return self.control_url or settings.control_db_url()

    def repo(self) -> "PipelineRepository":
        from cdc_assets.control.repository import PipelineRepository

        return PipelineRepository.from_url(self.url())


def cmd_init(ctx: _Context, args: argparse.Namespace) -> int:
    """Create or upgrade the control schema."""
    from cdc_assets.control.schema import head_revision, init_schema

    url = ctx.url()
    applied = init_schema(url)
    for line in applied:
        _out(line)
    state = "created/upgraded" if applied else "already up to date"
    _out(f"control schema {state} at revision {head_revision()} ({redact_url(url)})")
    return EXIT_OK


def cmd_add(ctx: _Context, args: argparse.Namespace) -> int:
    """Validate every field, refuse a taken name or a clash with another pipeline, then insert.

    The clash checks run in the repository, in the insert's transaction (``control/conflicts.py``):
    an asset key another pipeline defines, or a target table another pipeline writes.
    """
    from cdc_assets.control.conflicts import target_asset_keys
    from cdc_assets.control.repository import (
        AssetKeyConflict,
        PipelineExists,
        SharedTargetConflict,
    )

    spec = build_spec(
        args.name,
        source=args.source,
        target=args.target,
        tables=args.table or [],
        mode=args.mode,
        target_schema=args.target_schema,
        enabled=not args.disabled,
    )
    prefix = parse_prefix(args.asset_key_prefix) if args.asset_key_prefix is not None else None
    repo = ctx.repo()
    if any(r.name == spec.name for r in repo.list()):
        raise _field_error("NAME", spec.name, "a pipeline with this name already exists")
    try:
        row = repo.add(spec, asset_key_prefix=prefix, refuse_shared_target=True)
    except PipelineExists:
        raise _field_error("NAME", spec.name, "a pipeline with this name already exists") from None
    except AssetKeyConflict as exc:
        raise UsageError(f"--asset-key-prefix: {exc.for_row()}") from None
    except SharedTargetConflict as exc:
        raise UsageError(f"--table: {exc.for_row()}") from None
    _out(
        f"added pipeline {row.name} ({row.mode}, {'enabled' if row.enabled else 'disabled'}): "
        f"{redact_url(row.source_url)} -> {redact_url(row.target_url)} schema {row.target_schema}, "
        f"tables {', '.join(t.display for t in row.tables)}"
    )
    _out(f"asset keys: {', '.join(target_asset_keys(row))}")
    _request_reload()
    return EXIT_OK


def cmd_list(ctx: _Context, args: argparse.Namespace) -> int:
    """One aligned line per pipeline; a clash with an earlier row shows as its error."""
    from cdc_assets.control.conflicts import row_problems

    rows = ctx.repo().list()
    if not rows:
        _out("no pipelines yet: add one with `cdc-assets pipeline add`")
        return EXIT_OK
    clashes = row_problems(rows)
    header = [
        "NAME",
        "MODE",
        "ENABLED",
        "FULL_LOAD",
        "CDC",
        "UPDATED_AT",
        "KEY_PREFIX",
        "LAST_ERROR",
    ]
    body = [
        [
            r.name,
            r.mode.value,
            "yes" if r.enabled else "no",
            r.full_load_status.value,
            r.cdc_status.value,
            _ts(r.updated_at),
            "/".join(r.key_prefix),
            _short(r.last_error or _bad_row(r.config_error or clashes.get(r.name))),
        ]
        for r in rows
    ]
    _out(format_table(header, body))
    return EXIT_OK


def _bad_row(problem: str | None) -> str | None:
    return f"bad row: {problem}" if problem else None


def describe_row(row: "PipelineRow", clash: str | None = None) -> list[tuple[str, str]]:
    """Every column of a row as (label, text), URLs redacted, then its asset keys.

    ``clash`` is what ``control/conflicts.py`` says of the row against the earlier ones.
    """
    from cdc_assets.asset_keys import source_key
    from cdc_assets.control.conflicts import target_asset_keys

    def opt(value: object) -> str:
        return "-" if value is None else str(value)

    prefix = "/".join(row.asset_key_prefix) if row.asset_key_prefix else f"- (default: {row.name})"
    sources = ["/".join(source_key(row.key_prefix, t)) for t in row.tables]
    return [
        ("name", row.name),
        ("id", str(row.id)),
        ("mode", row.mode.value),
        ("enabled", "yes" if row.enabled else "no"),
        ("source_url", redact_url(row.source_url)),
        ("target_url", redact_url(row.target_url)),
        ("target_schema", row.target_schema),
        ("tables", ", ".join(t.display for t in row.tables)),
        ("asset_key_prefix", prefix),
        ("asset_keys", ", ".join(target_asset_keys(row))),
        ("source_asset_keys", ", ".join(sources)),
        ("full_load_status", row.full_load_status.value),
        ("full_load_started_at", _ts(row.full_load_started_at)),
        ("full_load_completed_at", _ts(row.full_load_completed_at)),
        ("full_load_rows", opt(row.full_load_rows)),
        ("full_load_run_id", opt(row.full_load_run_id)),
        ("full_load_authority", opt(row.full_load_authority)),
        ("cdc_status", row.cdc_status.value),
        ("cdc_lsn", opt(row.cdc_lsn)),
        ("cdc_lag_bytes", opt(row.cdc_lag_bytes)),
        ("cdc_progress_at", _ts(row.cdc_progress_at)),
        ("cdc_run_id", opt(row.cdc_run_id)),
        ("cdc_authority", opt(row.cdc_authority)),
        ("last_run_id", opt(row.last_run_id)),
        ("last_error", scrub(row.last_error) if row.last_error else "-"),
        ("config_error", scrub(row.config_error) if row.config_error else "-"),
        ("conflict", scrub(clash) if clash else "-"),
        ("created_at", _ts(row.created_at)),
        ("updated_at", _ts(row.updated_at)),
    ]


def cmd_show(ctx: _Context, args: argparse.Namespace) -> int:
    """All fields, then the newest status changes."""
    from cdc_assets.control.conflicts import row_problems

    repo = ctx.repo()
    row = repo.get(args.name)
    fields = describe_row(row, row_problems(repo.list()).get(row.name))
    width = max(len(label) for label, _ in fields)
    for label, text in fields:
        _out(f"{label.ljust(width)}  {text}")
    events = repo.events(args.name, limit=args.events)
    _out()
    if not events:
        _out("no status changes yet")
        return EXIT_OK
    _out(f"recent status changes (newest first, up to {args.events}):")
    body = [
        [
            _ts(e.created_at),
            e.phase.value,
            f"{e.old_status or '-'} -> {e.new_status}",
            e.writer.value,
            e.run_id or "-",
            _short(e.message, 80),
        ]
        for e in events
    ]
    _out(format_table(["AT", "PHASE", "CHANGE", "WRITER", "RUN", "MESSAGE"], body))
    return EXIT_OK


def _drop_artifacts(row: "PipelineRow", *, force: bool, action: str) -> bool:
    """Drop the slot and publication; False (after saying why) when the caller must stop."""
    from cdc_assets.source.cleanup import drop_replication_artifacts

    try:
        for line in drop_replication_artifacts(row.source_url, row.name):
            _out(line)
    except CdcError as exc:
        if not force:
            _err(f"error: {exc.for_row()}")
            _err(
                f"error: nothing was {action}: the source must be reachable to drop replication "
                f"slot {row.spec.slot_name} and publication {row.spec.publication_name}; fix it "
                "and retry, or use --force and drop them by hand"
            )
            return False
        _err(f"warning: {exc.for_row()}")
        _err(
            f"warning: --force: replication slot {row.spec.slot_name} and publication "
            f"{row.spec.publication_name} may remain on the source; drop them by hand "
            "(SELECT pg_drop_replication_slot(...); DROP PUBLICATION ...)"
        )
    return True


def _cleanup_target(row: "PipelineRow") -> None:
    """Best effort: staging tables a killed full load left behind (engine/full_load.py)."""
    try:
        from cdc_assets.engine.full_load import cleanup_full_load
        from cdc_assets.pg.connect import resolve
    except ImportError:
        return
    try:
        target = resolve(row.target_url, pipeline=row.name, role="target")
        source = resolve(row.source_url, pipeline=row.name, role="source")
        for line in cleanup_full_load(row.spec, source_url=source, target_url=target):
            _out(line)
    except CdcError as exc:
        _err(f"warning: staging tables not cleaned up: {exc.for_row()}")


def cmd_reset(ctx: _Context, args: argparse.Namespace) -> int:
    """Back to NOT_STARTED, after dropping slot + publication (while holding the pipeline lock).

    If the source is unreachable the row is left as it was (exit 1) unless ``--force``: resetting
    while the slot survives would leak it and pin WAL on the source.
    """
    from cdc_assets.domain import Writer
    from cdc_assets.ops_cli import lock_stopping_stream

    repo = ctx.repo()
    row = repo.get(args.name)
    with lock_stopping_stream(repo, args.name):
        if not _drop_artifacts(row, force=args.force, action="reset"):
            return EXIT_FAILED
        _cleanup_target(row)
        after = repo.reset(args.name, writer=Writer.CLI, message="cdc-assets pipeline reset")
    _out(f"reset pipeline {after.name}: full_load {after.full_load_status}, cdc {after.cdc_status}")
    return EXIT_OK


def cmd_remove(ctx: _Context, args: argparse.Namespace) -> int:
    """Drop slot + publication, then the row (its events stay, see control/models.py)."""
    from cdc_assets.ops_cli import lock_stopping_stream

    repo = ctx.repo()
    row = repo.get(args.name)
    with lock_stopping_stream(repo, args.name):
        if not _drop_artifacts(row, force=args.force, action="removed"):
            return EXIT_FAILED
        _cleanup_target(row)
        repo.remove(args.name)
    _out(f"removed pipeline {row.name} (target tables in schema {row.target_schema} kept)")
    _request_reload()
    return EXIT_OK


def _set_enabled(enabled: bool) -> Callable[[_Context, argparse.Namespace], int]:
    def run(ctx: _Context, args: argparse.Namespace) -> int:
        row = ctx.repo().set_enabled(args.name, enabled)
        _out(f"pipeline {args.name} {'enabled' if enabled else 'disabled'}; CDC {row.cdc_status}")
        if enabled and row.cdc_status is CdcStatus.STOPPED:
            _out("CDC resumes from where it stopped with the next sensor tick")
        elif not enabled and row.cdc_status is CdcStatus.STOPPED:
            _out("the replication slot is kept (it holds source WAL until `pipeline enable`)")
        return EXIT_OK

    return run


def _export_control_url(ctx: _Context) -> None:
    # ops_cli and the demo read CDC_CONTROL_DB_URL themselves; --control-db-url must reach them.
    if ctx.control_url:
        os.environ[settings.CONTROL_DB_URL_VAR] = ctx.control_url


def cmd_run(ctx: _Context, args: argparse.Namespace) -> int:
    """Delegate to ``cdc_assets.ops_cli.run_pipeline`` (Dagster side, imported lazily)."""
    try:
        from cdc_assets.ops_cli import run_pipeline
    except ImportError as exc:
        _err(f"error: `cdc-assets run` is unavailable: {exc}")
        return EXIT_FAILED
    _export_control_url(ctx)
    return run_pipeline(args.name, args.phase)


def cmd_reconcile(ctx: _Context, args: argparse.Namespace) -> int:
    """Delegate to ``cdc_assets.ops_cli.reconcile_once``."""
    try:
        from cdc_assets.ops_cli import reconcile_once
    except ImportError as exc:
        _err(f"error: `cdc-assets reconcile` is unavailable: {exc}")
        return EXIT_FAILED
    _export_control_url(ctx)
    return reconcile_once()


def cmd_demo(ctx: _Context, args: argparse.Namespace) -> int:
    """Delegate to ``cdc_assets.demo.main`` with the demo's parsed flags."""
    try:
        from cdc_assets.demo import main as demo_main
    except ImportError as exc:
        _err(f"error: `cdc-assets demo` is unavailable: {exc}")
        return EXIT_FAILED
    return demo_main(args)


# -- parser ------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree; ``--control-db-url`` is accepted before or after the command."""
    common = _Parser(add_help=False)
    common.add_argument(
        "--control-db-url",
        default=argparse.SUPPRESS,
        help=f"control database URL (default: ${settings.CONTROL_DB_URL_VAR})",
    )
    parser = _Parser(
        prog="cdc-assets",
        description="PostgreSQL full load + CDC pipelines run by Dagster.",
        parents=[common],
    )
    parser.add_argument(
        "--traceback", action="store_true", help="show tracebacks of unexpected errors"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        parent: "argparse._SubParsersAction[_Parser]",
        name: str,
        handler: Callable[[_Context, argparse.Namespace], int],
        help_text: str,
    ) -> _Parser:
        p = parent.add_parser(name, help=help_text, description=help_text, parents=[common])
        p.set_defaults(handler=handler)
        return p

    command(sub, "init", cmd_init, "create or upgrade the control schema")

    pipeline = sub.add_parser("pipeline", help="manage pipelines", parents=[common])
    psub = pipeline.add_subparsers(dest="pipeline_command", required=True, metavar="ACTION")
    add = command(psub, "add", cmd_add, "add a pipeline (validated; nothing written on error)")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--source", required=True, metavar="URL", help="postgresql:// URL or env:VAR")
    add.add_argument("--target", required=True, metavar="URL", help="postgresql:// URL or env:VAR")
    add.add_argument(
        "--table",
        action="append",
        required=True,
        metavar="T",
        help='schema.table; repeat for more; quote identifiers like \'"Sales"."Order Items"\'',
    )
    add.add_argument(
        "--mode",
        default=Mode.FULL_LOAD_AND_CDC.value,
        metavar="MODE",
        help="full_load or full_load_and_cdc (default)",
    )
    add.add_argument("--target-schema", default="public", metavar="S")
    add.add_argument("--disabled", action="store_true", help="add it without launching runs")
    add.add_argument(
        "--asset-key-prefix",
        default=None,
        metavar="A/B",
        help="asset key prefix of the tables, parts separated by / (default: the pipeline name); "
        "table public.orders becomes asset A/B/orders",
    )
    command(psub, "list", cmd_list, "list pipelines and their status")
    show = command(psub, "show", cmd_show, "every field and recent status changes")
    show.add_argument("name", metavar="NAME")
    show.add_argument("--events", type=int, default=20, metavar="N")
    reset = command(
        psub, "reset", cmd_reset, "back to NOT_STARTED; drops the slot and the publication"
    )
    reset.add_argument("name", metavar="NAME")
    reset.add_argument("--force", action="store_true", help="reset even if the source is down")
    remove = command(psub, "remove", cmd_remove, "drop slot + publication, then the pipeline")
    remove.add_argument("name", metavar="NAME")
    remove.add_argument("--force", action="store_true", help="remove even if the source is down")
    for verb, enabled in (("enable", True), ("disable", False)):
        p = command(psub, verb, _set_enabled(enabled), f"{verb} sensor and schedule runs")
        p.add_argument("name", metavar="NAME")

    run = command(sub, "run", cmd_run, "run a pipeline's job in this process (exit 0 on success)")
    run.add_argument("name", metavar="NAME")
    run.add_argument("--phase", choices=["full_load", "cdc"], default="full_load")
    command(sub, "reconcile", cmd_reconcile, "repair rows from Dagster's run records once")
    # Not `command()`: the demo makes its own control database, so --control-db-url is not its.
    demo_help = "embedded PostgreSQL + demo pipeline + Dagster UI"
    demo = sub.add_parser("demo", help=demo_help, description=demo_help)
    demo.set_defaults(handler=cmd_demo)
    try:  # the demo's own flags, so `demo --help` lists them (a stdlib-only module)
        from cdc_assets.demo import DESCRIPTION, add_arguments
    except ImportError:
        pass  # cmd_demo then says the demo is unavailable
    else:
        demo.description = DESCRIPTION
        add_arguments(demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code (see the module docstring)."""
    parser = build_parser()
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except UsageError as exc:
        _err(f"error: {exc}")
        return EXIT_USAGE
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    ctx = _Context(getattr(args, "control_db_url", None))
    try:
        return int(args.handler(ctx, args))
    except UsageError as exc:
        _err(f"error: {exc}")
        return EXIT_USAGE
    except (CdcError, settings.SettingError) as exc:
        message = exc.for_row() if isinstance(exc, CdcError) else str(exc)
        _err(f"error: {message}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except Exception as exc:
        if args.traceback:
            raise
        first = next((ln for ln in str(exc).splitlines() if ln.strip()), "")
        _err(f"error: unexpected {type(exc).__name__}: {first} (rerun with --traceback)")
        return EXIT_FAILED
    finally:
        _dispose()


def _dispose() -> None:
    if "cdc_assets.control.db" in sys.modules:
        from cdc_assets.control.db import dispose_engines

        dispose_engines()


if __name__ == "__main__":
    sys.exit(main())
