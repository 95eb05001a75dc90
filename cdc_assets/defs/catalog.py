"""What the code location is built from: the pipelines of ``public.pipelines``, read once per load.

Dagster builds definitions when a code location loads, so the per-table assets come from the
rows as they were at that moment. :class:`Catalog` is that moment, reduced to what the
definitions need (no URL, so no secret): per pipeline its name, mode, target schema, key prefix
and tables. Three sources, in order:

1. a run worker (``RECONSTRUCTION``) rebuilds from the catalog its run was launched with, stored
   in the run's reconstruction metadata, never from a table that may have changed since;
2. a code server reads the control database, and saves what it read in the Dagster instance
   (its key-value store: shared by every code server, unlike a local file);
3. if the control database cannot be read, the last good catalog from the instance, with a
   warning: a control-DB outage must not remove every asset and sensor from the UI.

A row that cannot be built (a hand-written bad table name, an asset key another pipeline
already has) is left out with its reason in :attr:`Catalog.problems`; the others load.
"""

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cdc_assets.asset_keys import Key, cross_collisions, source_key, table_key
from cdc_assets.domain import Mode, TableRef

if TYPE_CHECKING:
    import dagster as dg

    from cdc_assets.control.rows import PipelineRow

log = logging.getLogger(__name__)

#: Key of the catalog in reconstruction metadata and in the instance's key-value store.
CATALOG_KEY = "cdc_assets/catalog"
FORMAT = 1


@dataclass(frozen=True, slots=True)
class PipelineAssets:
    """One pipeline as its assets see it."""

    name: str
    mode: Mode
    target_schema: str
    prefix: Key
    tables: tuple[TableRef, ...]

    @property
    def wants_cdc(self) -> bool:
        """True for a pipeline with CDC (it has a lag check)."""
        return self.mode is Mode.FULL_LOAD_AND_CDC

    def target_keys(self) -> list[Key]:
        """The keys of the target tables, in the row's order."""
        return [table_key(self.prefix, t) for t in self.tables]

    def source_keys(self) -> list[Key]:
        """The keys of the source tables, in the row's order."""
        return [source_key(self.prefix, t) for t in self.tables]

    @classmethod
    def of_row(cls, row: "PipelineRow") -> "PipelineAssets":
        """The row's table assets, keyed as ``asset_keys.py`` keys them."""
        return cls(
            name=row.name,
            mode=row.mode,
            target_schema=row.target_schema,
            prefix=row.key_prefix,
            tables=row.tables,
        )

    def to_json(self) -> dict[str, Any]:
        """Plain JSON values (the catalog travels in reconstruction metadata)."""
        return {
            "name": self.name,
            "mode": self.mode.value,
            "target_schema": self.target_schema,
            "prefix": list(self.prefix),
            "tables": [[t.schema, t.name] for t in self.tables],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "PipelineAssets":
        """The inverse of :meth:`to_json`."""
        return cls(
            name=str(data["name"]),
            mode=Mode(data["mode"]),
            target_schema=str(data["target_schema"]),
            prefix=tuple(str(p) for p in data["prefix"]),
            tables=tuple(TableRef(str(s), str(n)) for s, n in data["tables"]),
        )


@dataclass(frozen=True, slots=True)
class Catalog:
    """The pipelines the definitions are built from, and the rows left out (with why)."""

    pipelines: tuple[PipelineAssets, ...] = ()
    problems: Mapping[str, str] = field(default_factory=dict)
    origin: str = "control"
    """``control`` (read now), ``cache`` (last good, control DB unreadable), ``reconstruction``
    (a run worker) or ``empty`` (nothing could be read)."""
    warning: str | None = None

    def fingerprint(self) -> str:
        """A digest of what the definitions depend on; equal catalogs build equal definitions."""
        return fingerprint_of(self.pipelines, self.problems)

    def to_json(self) -> str:
        """The catalog as one JSON text, stable for equal catalogs."""
        return json.dumps(
            {
                "format": FORMAT,
                "pipelines": [p.to_json() for p in self.pipelines],
                "problems": dict(sorted(self.problems.items())),
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str, origin: str, warning: str | None = None) -> "Catalog":
        """The inverse of :meth:`to_json`; an unknown format raises ``ValueError``."""
        data = json.loads(text)
        if data.get("format") != FORMAT:
            raise ValueError(f"catalog format {data.get('format')!r}, expected {FORMAT}")
        return cls(
            pipelines=tuple(PipelineAssets.from_json(p) for p in data["pipelines"]),
            problems=dict(data.get("problems", {})),
            origin=origin,
            warning=warning,
        )

    def owner_of(self) -> dict[Key, str]:
        """Target key -> pipeline: maps a UI launch (an asset selection) to its pipeline."""
        return {k: p.name for p in self.pipelines for k in p.target_keys()}


def fingerprint_of(pipelines: Iterable[PipelineAssets], problems: Mapping[str, str]) -> str:
    """The digest :meth:`Catalog.fingerprint` returns, for any set of pipelines."""
    body = json.dumps(
        {
            "pipelines": sorted((p.to_json() for p in pipelines), key=lambda p: p["name"]),
            "problems": sorted(problems),
        },
        sort_keys=True,
    )
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def catalog_from_rows(rows: Sequence["PipelineRow"], origin: str = "control") -> Catalog:
    """The buildable rows (oldest first keeps its keys on a collision) and the others' reasons."""
    problems: dict[str, str] = {}
    good = []
    for row in sorted(rows, key=lambda r: r.id):
        if row.config_error is not None:
            problems[row.name] = row.config_error
            continue
        good.append(row)
    clashes = cross_collisions((r.name, r.key_prefix, r.tables) for r in good)
    problems.update(clashes)
    pipelines = tuple(
        PipelineAssets.of_row(r)
        for r in sorted(good, key=lambda r: r.name)
        if r.name not in clashes
    )
    return Catalog(pipelines=pipelines, problems=problems, origin=origin)


def read_control(url: str) -> Catalog:
    """The catalog of the control database now (raises if it cannot be read)."""
    from cdc_assets.control.repository import PipelineRepository

    return catalog_from_rows(PipelineRepository.from_url(url).list())


def _instance() -> "dg.DagsterInstance | None":
    """The Dagster instance of this process, if ``DAGSTER_HOME`` names one."""
    import dagster as dg

    try:
        return dg.DagsterInstance.get()
    except Exception:  # no DAGSTER_HOME (a unit test, a bare import): nothing to cache in
        return None


def save_last_good(catalog: Catalog) -> None:
    """Keep ``catalog`` in the instance's key-value store for the next failed read."""
    instance = _instance()
    if instance is None:
        return
    try:
        instance.run_storage.set_cursor_values({CATALOG_KEY: catalog.to_json()})
    except Exception as exc:  # the cache is a convenience; loading must go on
        log.warning("cdc_assets: could not save the pipeline catalog in Dagster storage: %s", exc)


def last_good() -> str | None:
    """The JSON of the last good catalog in the instance, if any."""
    instance = _instance()
    if instance is None:
        return None
    try:
        return instance.run_storage.get_cursor_values({CATALOG_KEY}).get(CATALOG_KEY)
    except Exception:
        return None


def load_catalog(url: str | None) -> Catalog:
    """The catalog for this load, from the three sources of the module docstring."""
    from dagster._core.definitions.definitions_load_context import (
        DefinitionsLoadContext,
        DefinitionsLoadType,
    )

    context = DefinitionsLoadContext.get()
    stored = None
    if context.load_type is DefinitionsLoadType.RECONSTRUCTION:
        stored = context.reconstruction_metadata.get(CATALOG_KEY)
    if isinstance(stored, str):
        catalog = Catalog.from_json(stored, origin="reconstruction")
    else:
        catalog = _read_or_fall_back(url)
    # Saved with the definitions, so the run workers of runs launched now rebuild exactly these.
    context.add_to_pending_reconstruction_metadata(CATALOG_KEY, catalog.to_json())
    return catalog


def _read_or_fall_back(url: str | None) -> Catalog:
    if not url:
        return Catalog(origin="empty", warning="CDC_CONTROL_DB_URL is not set: no pipeline assets")
    try:
        catalog = read_control(url)
    except Exception as exc:
        from cdc_assets.secrets import scrub

        reason = scrub(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        cached = last_good()
        if cached is None:
            text = f"control database unreadable ({reason}) and no last good catalog: no assets"
            log.warning("cdc_assets: %s", text)
            return Catalog(origin="empty", warning=text)
        text = f"control database unreadable ({reason}): loaded the last good pipeline catalog"
        log.warning("cdc_assets: %s", text)
        return Catalog.from_json(cached, origin="cache", warning=text)
    save_last_good(catalog)
    for name, reason in sorted(catalog.problems.items()):
        log.warning("cdc_assets: pipeline %r has no assets: %s", name, reason)
    return catalog
