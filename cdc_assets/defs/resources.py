"""Resources: the control database and the pipeline's source/target connections.

Ops, hooks and sensors get everything that touches a database from here, so connection errors are
translated once (``pg.connect``) and the op stays a thin call into ``engine/``. The connections
resource checks, before the op starts, that the run's pipeline can be resolved and reached: a
missing ``env:VAR`` or an unreachable source fails the run at resource init with a clear message,
which the failure sensor and the reconciler copy into the row (hooks do not fire for such runs).
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING

import dagster as dg
from pydantic import PrivateAttr

from cdc_assets.defs.run_status import pipeline_failure
from cdc_assets.defs.tags import complete_run_tags, pipeline_of_run
from cdc_assets.domain import PipelineSpec
from cdc_assets.errors import CdcError
from cdc_assets.pg.connect import connect, resolve
from cdc_assets.settings import Settings

if TYPE_CHECKING:
    from cdc_assets.control.repository import PipelineRepository


class ControlDb(dg.ConfigurableResource):  # type: ignore[type-arg]
    """The control database holding ``public.pipelines``; hands out the one repository."""

    url: str

    def repository(self) -> "PipelineRepository":
        """The repository for this URL (its engine is cached per URL by the repository)."""
        from cdc_assets.control.repository import PipelineRepository

        return PipelineRepository.from_url(self.url)


@dataclass(frozen=True, slots=True)
class ResolvedPipeline:
    """A pipeline's spec with its connection references resolved for this process."""

    spec: PipelineSpec
    source_url: str
    target_url: str


class PostgresConnections(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Resolves a pipeline row's ``source_url``/``target_url`` at run time and checks them.

    In a run (the partition or ``cdc/pipeline`` tag names the pipeline) set-up resolves both
    references and opens and closes one connection to each, so a bad reference or a dead server
    ends the run before the op with the reason in the run's failure event.
    """

    control: ControlDb
    check_on_setup: bool = True
    _resolved: ResolvedPipeline | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Fail fast (resource init) when the run's pipeline cannot be reached."""
        run = context.dagster_run
        if run is None or not self.check_on_setup:
            return
        name = pipeline_of_run(run)
        if name is None:
            return
        if context.instance is not None:
            complete_run_tags(context.instance, run, name, Settings.from_env())
        try:
            resolved = self.resolve(self.control.repository().get(name).spec)
            self.probe(resolved)
        except CdcError as exc:
            # Raised as it is, the run page would lead with DagsterResourceFunctionError.
            raise pipeline_failure(exc, setup=True) from exc
        self._resolved = resolved

    def resolve(self, spec: PipelineSpec) -> ResolvedPipeline:
        """Resolve ``env:VAR`` references now, in this process; raises ``ConfigError``."""
        return ResolvedPipeline(
            spec=spec,
            source_url=resolve(spec.source_url, pipeline=spec.name, role="source"),
            target_url=resolve(spec.target_url, pipeline=spec.name, role="target"),
        )

    def resolved(self, spec: PipelineSpec) -> ResolvedPipeline:
        """The set-up's resolution when it was for ``spec``; else resolve now."""
        if self._resolved is not None and self._resolved.spec == spec:
            return self._resolved
        return self.resolve(spec)

    def probe(self, resolved: ResolvedPipeline) -> None:
        """Open and close one connection to source and target; raises ``ConnectError``."""
        name = resolved.spec.name
        for role, url in (("source", resolved.source_url), ("target", resolved.target_url)):
            with connect(url, pipeline=name, role=role, autocommit=True, connect_timeout=5):
                pass
