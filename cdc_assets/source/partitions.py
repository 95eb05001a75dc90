"""The leaf partition checks of a CDC batch: truncated and departed partitions the WAL hides.

pgoutput never sends a ``TRUNCATE`` of a single partition when the publication publishes via the
root (it sends nothing at all), and ``DETACH PARTITION`` or ``DROP TABLE`` of a partition removes
its rows from the partitioned table without a DELETE in the stream, so without these checks the
target would keep those rows silently. The source side lives here: the leaves' heap files now,
the comparison with a previous record, and the errors. The record itself is the target's
(``target/leaves.py``); the engine reads it and passes it in, and passes the statement that
accepts a change as rendered text (this layer does not know the target's tables).
"""

from collections.abc import Mapping
from typing import Any

import psycopg

from cdc_assets.domain import PipelineSpec, TableRef
from cdc_assets.errors import SchemaChangeError
from cdc_assets.source import changes


def leaf_files(
    src: psycopg.Connection[Any], oids: Mapping[int, TableRef]
) -> list[changes.LeafPartition]:
    """The leaf partitions of the pipeline tables ``oids``, each with its heap file now."""
    return changes.leaf_partitions(src, sorted(oids))


def changed_leaves(
    leaves: list[changes.LeafPartition], before: Mapping[int, int]
) -> list[changes.LeafPartition]:
    """The leaves recorded ``before`` (OID -> heap file) whose heap file is another one now.

    Such a leaf was truncated (or rewritten) since that record, unless the batch then applies a
    ``TRUNCATE`` of its root (which gives every leaf a new file and empties them all anyway): the
    caller decides after reading the batch's changes. A leaf not recorded before is new: fine.
    """
    return [x for x in leaves if x.oid in before and before[x.oid] != x.filenode]


def gone_leaves(now: Mapping[int, int], before: Mapping[int, int]) -> list[int]:
    """The OIDs, sorted, of leaves recorded ``before`` that are no leaf of the tables ``now``."""
    return sorted(set(before) - set(now))


def leaf_truncated_error(
    spec: PipelineSpec,
    oids: Mapping[int, TableRef],
    leaves: list[changes.LeafPartition],
    *,
    accept: str,
) -> SchemaChangeError:
    """The error for leaves truncated behind the publication's back, with fixes that work.

    Their position in the WAL is unknown, so it cannot be applied exactly (the rows inserted into
    a partition after it are in the stream, mixed with those before). All of them are named at
    once, so one rewrite of many leaves (a volatile ``ADD COLUMN`` on the root) needs one fix.
    ``accept`` is the target statement that forgets those leaves' recorded files.
    """
    named = ", ".join(
        f"{leaf.schema}.{leaf.name} of {oids[leaf.root_oid]} ({leaf.bound})" for leaf in leaves
    )
    several = len(leaves) > 1
    return SchemaChangeError(
        f"partition{'s' if several else ''} {named} {'were' if several else 'was'} truncated or "
        "rewritten on the source since the last batch; logical decoding does not send a TRUNCATE "
        "of one partition (the publication publishes via the partition root), so the target may "
        "still hold rows that partition no longer has; nothing of this batch was applied",
        pipeline=spec.name,
        table=", ".join(sorted({str(oids[leaf.root_oid]) for leaf in leaves})),
        fix="reset the pipeline for a new full load; if "
        f"{'those partitions were' if several else 'that partition was'} only rewritten "
        f"(VACUUM FULL, CLUSTER, ADD COLUMN with a volatile default) and nothing was removed, run "
        f"{accept} on the target and rerun",
    )


def leaves_gone_error(
    spec: PipelineSpec, src: psycopg.Connection[Any], gone: list[int], *, accept: str
) -> SchemaChangeError:
    """The error for partitions that left a pipeline table since the last batch.

    ``DETACH PARTITION`` and ``DROP TABLE`` of a partition remove its rows from the partitioned
    table without a DELETE in the stream, so the target's copy would keep them for good. Checked
    before reading the stream: nothing of the batch is applied. ``accept`` is the target
    statement that forgets those leaves' recorded files.
    """
    names = changes.relation_names(src, gone)
    named = ", ".join(
        f"{names[oid]} (OID {oid}, detached)" if oid in names else f"OID {oid} (dropped)"
        for oid in gone
    )
    return SchemaChangeError(
        f"partition{'s' if len(gone) > 1 else ''} {named} left a partitioned table of the "
        "pipeline since the last batch (DETACH PARTITION or DROP TABLE); logical decoding sends "
        "no DELETE for its rows, so the target still holds them; nothing of this batch was applied",
        pipeline=spec.name,
        table=", ".join(map(str, sorted(spec.tables))),
        fix="reset the pipeline for a new full load; or delete those rows from the target table "
        f"yourself, then run {accept} on the target and rerun",
    )
