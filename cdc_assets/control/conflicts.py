"""Pipelines that clash with an earlier one: the same asset key, or the same target table.

Both checks need every row, not one, so they are not in ``rows.py`` (which sees a row alone).
They are pure over :class:`PipelineRow` lists so that three callers agree on one answer:
``PipelineRepository.add`` refuses a new row inside its locked transaction, the code location
skips the assets of a row :func:`key_conflicts` names (a SQL ``INSERT`` bypasses ``add``), and
``pipeline show`` prints the same reason. The earlier row (lower id) always keeps what it had, so
adding a row by hand never takes assets away from a pipeline that already worked.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cdc_assets.asset_keys import Key, KeyOwner, cross_collisions, keys_of, table_key
from cdc_assets.control.rows import PipelineRow
from cdc_assets.domain import TableRef
from cdc_assets.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Claim:
    """What a pipeline takes for itself: its asset keys and its target tables."""

    name: str
    prefix: Key
    tables: tuple[TableRef, ...]
    target_url: str
    target_schema: str

    @classmethod
    def of(cls, row: PipelineRow) -> "Claim":
        """The claim of a stored row."""
        return cls(row.name, row.key_prefix, row.tables, row.target_url, row.target_schema)

    def targets(self) -> dict[tuple[str, str, str], TableRef]:
        """Each target table as (target URL as written, schema, name) -> the source table.

        The URL is compared as written: ``env:DW`` and the URL it holds are not known to be the
        same database without resolving secrets, which a check of the control table must not do.
        """
        return {(self.target_url, self.target_schema, t.name): t for t in self.tables}


class AssetKeyConflict(ConfigError):
    """A new pipeline would define an asset key another pipeline already defines."""

    kind = "asset_key_conflict"

    def __init__(self, pipeline: str, key: Key, owner: KeyOwner) -> None:
        self.key = key
        self.other = owner.pipeline
        super().__init__(
            f"asset key {'/'.join(key)} is already the key of table {owner.table.display} of "
            f"pipeline {owner.pipeline!r}",
            pipeline=pipeline,
            fix="choose another asset key prefix (--asset-key-prefix) for this pipeline",
        )


class SharedTargetConflict(ConfigError):
    """A new pipeline would write a target table another pipeline already writes."""

    kind = "shared_target"

    def __init__(self, pipeline: str, target: TableRef, other: str) -> None:
        self.target = target
        self.other = other
        super().__init__(
            f"target table {target.display} on the same target is already written by pipeline "
            f"{other!r}; two pipelines writing one table would overwrite each other",
            pipeline=pipeline,
            fix=f"replicate the table in pipeline {other!r} only, or choose another "
            "--target-schema (or target database) for this pipeline",
        )


def _by_id(rows: Iterable[PipelineRow]) -> list[PipelineRow]:
    return sorted(rows, key=lambda r: r.id)


def key_conflicts(rows: Iterable[PipelineRow]) -> dict[str, str]:
    """Pipeline name -> why its asset keys cannot be used: an earlier row (lower id) has one.

    A flagged row owns none of its keys, so a third row is judged only against rows that kept
    theirs. The code location skips the assets of every pipeline named here, with the reason.
    """
    return cross_collisions((r.name, r.key_prefix, r.tables) for r in _by_id(rows))


def target_conflicts(rows: Iterable[PipelineRow]) -> dict[str, str]:
    """Pipeline name -> why it must not run: an earlier row writes one of its target tables."""
    owners: dict[tuple[str, str, str], str] = {}
    problems: dict[str, str] = {}
    for row in _by_id(rows):
        mine = Claim.of(row).targets()
        clash = next((k for k in mine if k in owners and owners[k] != row.name), None)
        if clash is not None:
            target = TableRef(row.target_schema, clash[2])
            problems[row.name] = SharedTargetConflict(row.name, target, owners[clash]).detail
            continue
        owners.update(dict.fromkeys(mine, row.name))
    return problems


def row_problems(rows: Iterable[PipelineRow]) -> dict[str, str]:
    """Both checks at once, the key problem first (what ``pipeline show`` and ``list`` print)."""
    ordered = _by_id(rows)
    problems = target_conflicts(ordered)
    problems.update(key_conflicts(ordered))
    return problems


def refuse_new(
    existing: Sequence[PipelineRow], new: Claim, *, refuse_shared_target: bool = True
) -> None:
    """Raise if ``new`` collides with any existing row (flagged or not: first come keeps it).

    Raises:
        AssetKeyConflict: one of its asset keys (target or source) is an existing row's.
        SharedTargetConflict: ``refuse_shared_target`` and it writes an existing row's table.
    """
    mine = keys_of(new.name, new.prefix, new.tables)
    targets = new.targets()
    for row in _by_id(existing):
        if row.name == new.name:
            continue
        theirs = keys_of(row.name, row.key_prefix, row.tables)
        key = next((k for k in mine if k in theirs), None)
        if key is not None:
            raise AssetKeyConflict(new.name, key, theirs[key])
        if refuse_shared_target:
            shared = next((k for k in Claim.of(row).targets() if k in targets), None)
            if shared is not None:
                raise SharedTargetConflict(
                    new.name, TableRef(new.target_schema, shared[2]), row.name
                )


def target_asset_keys(row: PipelineRow) -> list[str]:
    """The keys of the row's target tables as ``a/b/orders``: what a downstream asset depends on."""
    return ["/".join(table_key(row.key_prefix, t)) for t in row.tables]
