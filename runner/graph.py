"""The order of a run's stages as a graph: which stage may start, from the inputs each one declares.

A stage is ready once every input it reads from this run's stages has finished (done, or skipped as
up to date); inputs from stages outside the run (`--only`) must already be on disk, which
`runner.run` checks. A stage downstream of one that did not finish never becomes ready. This module
is bookkeeping only: it starts no process and knows nothing of memory or cores; `runner.run`
decides when a ready stage actually starts.
"""

from __future__ import annotations

from collections.abc import Sequence

from aishorts.ipc.pipeline import StageSpec


class StageGraph:
    def __init__(self, specs: Sequence[StageSpec]) -> None:
        self._specs = {spec.name: spec for spec in specs}
        self._pending = [spec.name for spec in specs]
        """Not started yet, in the pipeline's order (which is also the order ready stages start in)."""
        self.running: set[str] = set()
        self.finished: set[str] = set()
        self.stopped: set[str] = set()
        """Ended without finishing (failed, out of memory, interrupted)."""

    def _upstream(self, name: str) -> list[str]:
        return [stage for stage in self._specs[name].inputs if stage in self._specs]

    def ready(self) -> list[StageSpec]:
        """Stages not started whose inputs from this run have all finished, in pipeline order."""
        return [self._specs[name] for name in self._pending
                if all(stage in self.finished for stage in self._upstream(name))]

    def start(self, name: str) -> None:
        self._pending.remove(name)
        self.running.add(name)

    def end(self, name: str, finished: bool) -> None:
        self.running.discard(name)
        (self.finished if finished else self.stopped).add(name)

    def not_started(self) -> list[str]:
        return list(self._pending)

    def waiting_on(self, name: str) -> list[str]:
        """The inputs of a stage that have not finished yet."""
        return [stage for stage in self._upstream(name) if stage not in self.finished]
