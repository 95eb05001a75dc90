"""Asset keys of a pipeline's tables, as plain tuples of strings (no Dagster import).

The scheme, shared by the code location and the CLI's collision check so both always agree:

- target table ``<target_schema>.<name>`` -> ``prefix + (name,)``;
- its source table ``<schema>.<name>`` -> ``prefix + ("source", schema, name)``;
- ``prefix`` is the row's ``asset_key_prefix`` if set, else ``(pipeline name,)``.

Why the pipeline name and not the target schema as the default prefix: a key must be unique per
target table and stable, and the name is the one value that is unique per row and never moves
(``target_schema`` is often ``public`` for every pipeline). A downstream asset then depends on
``shop/orders``, which reads as what it is. Dagster only accepts ``[A-Za-z0-9_]`` in a key part,
so other characters of a quoted identifier (``"Order Items"``) become ``_``; two tables of one
pipeline that would share a key after that are refused like two tables that share a target.
"""

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cdc_assets.domain import TableRef

Key = tuple[str, ...]

SOURCE_PART = "source"
_VALID_PART = re.compile(r"^[A-Za-z0-9_]+$")
_INVALID_RUN = re.compile(r"[^A-Za-z0-9_]+")
#: Most parts a prefix may have: keys stay readable and the UI's path stays short.
MAX_PREFIX_PARTS = 8


def key_part(identifier: str) -> str:
    """``identifier`` as a Dagster key part: runs of other characters become one ``_``."""
    part = _INVALID_RUN.sub("_", identifier).strip("_")
    return part or "_"


def prefix_problem(prefix: Sequence[str]) -> str | None:
    """Why ``prefix`` cannot be an asset key prefix, or None."""
    if not prefix:
        return "asset_key_prefix is empty (use NULL for the default, the pipeline's name)"
    if len(prefix) > MAX_PREFIX_PARTS:
        return f"asset_key_prefix has {len(prefix)} parts; at most {MAX_PREFIX_PARTS}"
    for part in prefix:
        if not isinstance(part, str) or not _VALID_PART.match(part):
            return (
                f"asset_key_prefix part {part!r} is not a valid Dagster key part "
                "(letters, digits and _ only)"
            )
    return None


def pipeline_prefix(pipeline: str, asset_key_prefix: Sequence[str] | None) -> Key:
    """The row's prefix: ``asset_key_prefix`` when set, else the pipeline's name."""
    return tuple(asset_key_prefix) if asset_key_prefix else (pipeline,)


def table_key(prefix: Key, table: TableRef) -> Key:
    """The key of the target copy of ``table`` (the target schema is the pipeline's one)."""
    return (*prefix, key_part(table.name))


def source_key(prefix: Key, table: TableRef) -> Key:
    """The key of the source table itself, declared upstream of its target copy."""
    return (*prefix, SOURCE_PART, key_part(table.schema), key_part(table.name))


def internal_collision(tables: Iterable[TableRef]) -> str | None:
    """Why two of one pipeline's tables would get one key after :func:`key_part`, or None."""
    seen: dict[str, TableRef] = {}
    for table in tables:
        part = key_part(table.name)
        first = seen.setdefault(part, table)
        if first != table and first.name != table.name:
            return (
                f"tables {first.display} and {table.display} would share the asset key part "
                f"{part!r}; rename one of them on the source or replicate it in another pipeline"
            )
    return None


@dataclass(frozen=True, slots=True)
class KeyOwner:
    """Who owns an asset key: the pipeline and the table it copies."""

    pipeline: str
    table: TableRef


def keys_of(pipeline: str, prefix: Key, tables: Iterable[TableRef]) -> dict[Key, KeyOwner]:
    """Every key a pipeline defines (targets and sources), with its owner."""
    keys: dict[Key, KeyOwner] = {}
    for table in tables:
        keys[table_key(prefix, table)] = KeyOwner(pipeline, table)
        keys[source_key(prefix, table)] = KeyOwner(pipeline, table)
    return keys


def cross_collisions(
    pipelines: Iterable[tuple[str, Key, Sequence[TableRef]]],
) -> dict[str, str]:
    """Pipelines whose keys collide with an earlier one's, each with the reason.

    Rows are taken in the given order (the caller sorts them, e.g. by id): the first owner of a
    key keeps it, a later row that would define it again is the one refused or flagged.
    """
    owners: dict[Key, KeyOwner] = {}
    problems: dict[str, str] = {}
    for name, prefix, tables in pipelines:
        mine = keys_of(name, prefix, tables)
        clash = next((k for k in mine if k in owners and owners[k].pipeline != name), None)
        if clash is not None:
            other = owners[clash]
            problems[name] = (
                f"asset key {'/'.join(clash)} is already the key of table {other.table.display} "
                f"of pipeline {other.pipeline!r}; set a different asset_key_prefix for "
                f"pipeline {name!r}"
            )
            continue
        owners.update(mine)
    return problems
