"""The replication slot checks a CDC batch makes before and after reading the slot.

A slot that is missing, recreated, unusable or in use would otherwise let a batch skip changes
silently or wait forever; each check fails with a typed error naming the pipeline and the fix.
"""

import time
from typing import Any

import psycopg

from cdc_assets.domain import PipelineSpec
from cdc_assets.errors import ConsistencyError, SourceError
from cdc_assets.source import changes

SLOT_BUSY_WAIT_S = 15.0


def require_slot(spec: PipelineSpec, src: psycopg.Connection[Any]) -> changes.SlotInfo:
    """The pipeline's slot, or a :class:`ConsistencyError` when it is gone (cheap checks)."""
    slot = changes.get_slot(src, spec.slot_name)
    if slot is None:
        raise ConsistencyError(
            f"replication slot {spec.slot_name} is missing",
            pipeline=spec.name,
            fix="reset the pipeline and run a new full load",
        )
    return slot


def check_slot(spec: PipelineSpec, src: psycopg.Connection[Any]) -> changes.SlotInfo:
    """The slot a batch may read: present, pgoutput, WAL kept, free, and its publication there."""
    slot = changes.get_slot(src, spec.slot_name)
    deadline = time.monotonic() + SLOT_BUSY_WAIT_S
    # A reader killed a moment ago keeps the slot until its backend notices: give it a moment.
    while slot is not None and slot.active_pid is not None and time.monotonic() < deadline:
        time.sleep(0.2)
        slot = changes.get_slot(src, spec.slot_name)
    if slot is None:
        raise ConsistencyError(
            f"replication slot {spec.slot_name} is missing: changes since the last batch are lost",
            pipeline=spec.name,
            fix="reset the pipeline and run a new full load",
        )
    if slot.plugin != "pgoutput" or slot.confirmed_flush_lsn is None:
        raise ConsistencyError(
            f"replication slot {spec.slot_name} is not a usable pgoutput slot "
            f"(plugin {slot.plugin}, wal_status {slot.wal_status})",
            pipeline=spec.name,
            fix="reset the pipeline and run a new full load",
        )
    if slot.wal_status == "lost":
        raise ConsistencyError(
            f"replication slot {spec.slot_name} lost the WAL it needed (wal_status lost)",
            pipeline=spec.name,
            fix="reset the pipeline and run a new full load; raise max_slot_wal_keep_size",
        )
    if slot.active_pid is not None:
        raise SourceError(
            f"replication slot {spec.slot_name} is in use by server process {slot.active_pid}",
            pipeline=spec.name,
            fix="wait for the other reader to finish, or terminate that process",
        )
    if not changes.publication_exists(src, spec.publication_name):
        raise ConsistencyError(
            f"publication {spec.publication_name} is missing",
            pipeline=spec.name,
            fix="reset the pipeline and run a new full load",
        )
    return slot


def wait_slot_released(src: psycopg.Connection[Any], slot: str) -> None:
    """The walsender of our stream lets go of the slot a moment after the session ends."""
    deadline = time.monotonic() + SLOT_BUSY_WAIT_S
    while time.monotonic() < deadline:
        info = changes.get_slot(src, slot)
        if info is None or info.active_pid is None:
            return
        time.sleep(0.05)
