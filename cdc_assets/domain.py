"""Value types shared by every layer: pipeline specs, table references, LSNs, statuses.

Standard library only, so the decoder, the engines, the control layer and the Dagster shell can all
depend on it without pulling each other in.
"""

import enum
import re
from dataclasses import dataclass, field

NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,47}")
"""Names become Dagster partition keys and part of slot/publication names (63-byte limit)."""

SLOT_PREFIX = "cdc_assets_"


class Mode(enum.StrEnum):
    """What a pipeline does after its full load."""

    FULL_LOAD = "full_load"
    FULL_LOAD_AND_CDC = "full_load_and_cdc"


class FullLoadStatus(enum.StrEnum):
    """Values of the PostgreSQL enum ``full_load_status``; the names equal the stored labels."""

    NOT_STARTED = "NOT_STARTED"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


class CdcStatus(enum.StrEnum):
    """Values of the PostgreSQL enum ``cdc_status``; the names equal the stored labels."""

    NOT_STARTED = "NOT_STARTED"
    ACTIVE = "ACTIVE"
    FAILED = "FAILED"
    STOPPED = "STOPPED"


class Phase(enum.StrEnum):
    """Which column a status change concerns; also the ``phase`` of ``pipeline_events``."""

    FULL_LOAD = "full_load"
    CDC = "cdc"


class Writer(enum.StrEnum):
    """Who wrote a status change. Run-record writers (sensor, reconciler) outrank op and hook."""

    OP = "op"
    HOOK = "hook"
    SENSOR = "sensor"
    RECONCILER = "reconciler"
    CLI = "cli"

    @property
    def is_authoritative(self) -> bool:
        """Writes derived from Dagster's run record win over writes from inside the run."""
        return self in (Writer.SENSOR, Writer.RECONCILER, Writer.CLI)


class InvalidName(ValueError):
    """A pipeline name or table identifier that cannot be used."""


def validate_name(name: str) -> str:
    """Return ``name`` if it is a valid pipeline name, else raise :class:`InvalidName`."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise InvalidName(
            f"invalid pipeline name {name!r}: use 1-48 characters, a lowercase letter first, "
            "then lowercase letters, digits or '_'"
        )
    return name


def slot_name(pipeline: str) -> str:
    """Replication slot of a pipeline; derived, never stored, so reset/remove can always find it."""
    return SLOT_PREFIX + validate_name(pipeline)


def publication_name(pipeline: str) -> str:
    """Publication of a pipeline; same derivation as :func:`slot_name`."""
    return SLOT_PREFIX + validate_name(pipeline)


_UNQUOTED = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
MAX_IDENTIFIER_BYTES = 63


def _parse_identifiers(text: str) -> list[str]:
    """Split a dotted SQL name into identifiers with PostgreSQL's quoting and case-folding rules."""
    parts: list[str] = []
    i = 0
    n = len(text)
    while True:
        if i >= n:
            raise InvalidName(f"invalid table name {text!r}: empty identifier")
        if text[i] == '"':
            j = i + 1
            buf: list[str] = []
            while True:
                k = text.find('"', j)
                if k < 0:
                    raise InvalidName(
                        f"invalid table name {text!r}: unterminated quoted identifier"
                    )
                buf.append(text[j:k])
                if k + 1 < n and text[k + 1] == '"':
                    buf.append('"')
                    j = k + 2
                    continue
                i = k + 1
                break
            ident = "".join(buf)
            if not ident:
                raise InvalidName(f"invalid table name {text!r}: empty quoted identifier")
        else:
            m = _UNQUOTED.match(text, i)
            if not m:
                raise InvalidName(
                    f"invalid table name {text!r}: unexpected character {text[i]!r} "
                    "(quote identifiers that are not plain words)"
                )
            ident = m.group(0).lower()
            i = m.end()
        if "\x00" in ident:
            raise InvalidName(f"invalid table name {text!r}: NUL character")
        if len(ident.encode()) > MAX_IDENTIFIER_BYTES:
            raise InvalidName(
                f"invalid table name {text!r}: identifier longer than {MAX_IDENTIFIER_BYTES} bytes"
            )
        parts.append(ident)
        if i == n:
            return parts
        if text[i] != ".":
            raise InvalidName(f"invalid table name {text!r}: expected '.' at position {i}")
        i += 1


def _quote(ident: str) -> str:
    if _UNQUOTED.fullmatch(ident) and ident == ident.lower() and "$" not in ident:
        return ident
    return '"' + ident.replace('"', '""') + '"'


@dataclass(frozen=True, slots=True, order=True)
class TableRef:
    """A table by schema and name, both as stored in the catalog (already case-folded/unquoted)."""

    schema: str
    name: str

    @classmethod
    def parse(cls, text: str) -> "TableRef":
        """Parse ``schema.table`` (or ``table``, meaning ``public.table``) with SQL quoting rules.

        ``"Sales"."Order Items"`` keeps its case and space; ``Sales.Orders`` folds to lower case,
        exactly as PostgreSQL would, so the stored text and the catalog agree.
        """
        if not isinstance(text, str) or not text.strip():
            raise InvalidName("invalid table name: empty")
        parts = _parse_identifiers(text.strip())
        if len(parts) == 1:
            return cls("public", parts[0])
        if len(parts) == 2:
            return cls(parts[0], parts[1])
        raise InvalidName(f"invalid table name {text!r}: use schema.table")

    @property
    def display(self) -> str:
        """Canonical text form, quoted only where needed; round-trips through :meth:`parse`."""
        return f"{_quote(self.schema)}.{_quote(self.name)}"

    def __str__(self) -> str:
        return self.display


def target_collision(tables: "tuple[TableRef, ...] | list[TableRef]") -> str | None:
    """Why two of ``tables`` cannot share a pipeline, or None: they would land on one target table.

    A pipeline puts every table in its one ``target_schema`` under the source table's name, so
    ``s1.a`` and ``s3.a`` would both become ``<target_schema>.a``. Names are compared as
    PostgreSQL identifiers, i.e. as :class:`TableRef` holds them (already case-folded or
    unquoted): ``S1.A`` and ``s3.a`` collide, ``"A"`` and ``a`` do not. Refused when the pipeline
    is added (and on hand-written rows), not half-way through its first full load.
    """
    seen: dict[str, TableRef] = {}
    for table in tables:
        first = seen.setdefault(table.name, table)
        if first is not table and first != table:
            return (
                f"tables {first.display} and {table.display} would both land on the same target "
                f"table (named {_quote(table.name)} in the target schema); list one of them, and "
                "put the other in a pipeline with a different target schema"
            )
    return None


class Lsn(int):
    """A PostgreSQL log sequence number; an int that prints as ``X/Y`` like ``pg_lsn``."""

    def __new__(cls, value: "int | str") -> "Lsn":
        """Build from an int or the ``X/Y`` text PostgreSQL prints."""
        if isinstance(value, str):
            hi, sep, lo = value.partition("/")
            if not sep:
                raise ValueError(f"invalid LSN {value!r}")
            return super().__new__(cls, (int(hi, 16) << 32) | int(lo, 16))
        if value < 0 or value >= 1 << 64:
            raise ValueError(f"LSN out of range: {value}")
        return super().__new__(cls, value)

    def __str__(self) -> str:
        return f"{int(self) >> 32:X}/{int(self) & 0xFFFFFFFF:X}"

    def __repr__(self) -> str:
        return f"Lsn('{self}')"


@dataclass(frozen=True, slots=True)
class PipelineSpec:
    """What a pipeline row says to do; URLs still unresolved (``env:VAR`` kept as written)."""

    name: str
    source_url: str
    target_url: str
    tables: tuple[TableRef, ...]
    target_schema: str = "public"
    mode: Mode = Mode.FULL_LOAD_AND_CDC
    enabled: bool = True
    id: int | None = field(default=None, compare=False)

    @property
    def slot_name(self) -> str:
        """Replication slot used by this pipeline (CDC mode only)."""
        return slot_name(self.name)

    @property
    def publication_name(self) -> str:
        """Publication used by this pipeline (CDC mode only)."""
        return publication_name(self.name)

    @property
    def wants_cdc(self) -> bool:
        """True when the full load must hand over to CDC (slot + publication)."""
        return self.mode is Mode.FULL_LOAD_AND_CDC


@dataclass(frozen=True)
class AddedColumnFill:
    """What ``ADD COLUMN`` gave the rows that existed before it, as far as the catalog tells.

    ``missing``: a fast (constant) default PostgreSQL keeps in ``pg_attribute.attmissingval``
    until the table is rewritten; existing rows read it without any row change in the WAL, so the
    target adds the column with the same value. ``per_row``: no such value, but the column has a
    default or is an identity column. Either a volatile default or identity filled every existing
    row in a table rewrite, which logical decoding does not send, or the default was set after the
    column was added (existing rows NULL, nothing lost). The catalog cannot tell the two apart.
    """

    missing: str | None = None
    per_row: bool = False


@dataclass(frozen=True)
class GeneratedColumn:
    """A source generated column, for the apply to create one the target lacks (added mid-CDC).

    ``type_sql`` is ``format_type`` of a built-in type (None for user types, which the full load
    maps and the apply cannot); ``expression`` is the source's ``pg_get_expr``.
    """

    name: str
    type_sql: str | None
    expression: str
    virtual: bool = False
