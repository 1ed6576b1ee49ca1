"""The Safety Net: the whole decision logic as one composite PTransform.

``SafetyNet(policy, mode)`` takes a dict of PCollections of validated input rows
(``transfers``, ``reports``, ``outcomes``, ``blacklist``; any may be missing) and returns a
dict of PCollections of output rows (``holds``, ``resolutions``, ``freezes``, ``outreach``,
``verdicts``, ``dead_letter``; ``scored`` for the backtest's threshold sweep;
``model_metrics``, the models' prequential summaries; ``versions``, the published model
versions; in batch mode ``state``, the keyed steps' saved states when a chunk asks for
them). The streaming job, the backtest and the tests all use it unchanged; ``mode`` only
picks the face of each keyed step ("stream": stateful DoFns with event-time timers;
"batch": GroupByKey by shard of the key space, then one call per key's sorted history).

The steps and their wiring are declared once in :mod:`core.graph`; this module turns
each into a :class:`~transforms.faces.RunMachine`. Model versions reach the Score step
as side data: in batch a side input, the list of every version (a transfer is scored by
the latest one published before its event time, exactly, in every runner mode); in
streaming through a directory the Learner writes and the scorers poll
(:mod:`transforms.versions`, ``versions_dir``).

``seeds`` (step label -> PCollection of :class:`~core.events.Seed`) and
``seed_versions`` start the steps from a state checkpoint (``transforms.checkpoint``);
``handover`` (batch, a chunked replay on this machine: :class:`~transforms.faces.Handover`)
carries the steps' states from one chunk to the next on local disk instead.
"""

from __future__ import annotations

from typing import Optional

import apache_beam as beam

from core.graph import (
    DEAD_LETTERS,
    INPUTS,
    OUTPUTS,
    RESULTS,
    ROUTERS,
    STEPS,
    Step,
    globals_before,
    verdict_row,
)
from core.machine import STATE, Chunk
from core.policy import Policy
from transforms.daily import Assessments, CallCapacity
from transforms.faces import DEFAULT_SHARDS, Handover, RunMachine
from transforms.side import ProfileBook, SideLoader
from transforms.versions import PublishVersions, VersionPoller, write_version

__all__ = ["SafetyNet", "SideLoader", "ProfileBook", "INPUTS", "OUTPUTS"]


# The Beam composite of each global selection of the graph (core.graph.GLOBALS).
GLOBALS = {"Assessments": lambda p, side: Assessments(p, side),
           "CallCapacity": lambda p, side: CallCapacity(p)}


class _Make:
    """Builds a step's machine in the DoFn's ``setup()`` (side data acquired there)."""

    def __init__(self, step: Step, policy: Policy, side: "SideLoader", mode: str):
        self.step, self.policy, self.side, self.mode = step, policy, side, mode

    def __call__(self):
        return self.step.make(self.policy, self.side.for_mode(self.mode))


class _Route(beam.DoFn):
    """The Beam face of a :class:`~core.graph.Router` (first branch: main output)."""

    def __init__(self, fn, main: str):
        self.fn, self.main = fn, main

    def process(self, element):
        tag, v = self.fn(element)
        yield v if tag == self.main else beam.pvalue.TaggedOutput(tag, v)


class _WriteSnapshot(beam.DoFn):
    """Writes a model snapshot (bytes from the Learner) to ``<base>/<model>.pkl``."""

    def __init__(self, base: str):
        self.base = base

    def process(self, item):
        from transforms.snapshots import snapshot_file, write_snapshot_bytes

        name, data = item
        write_snapshot_bytes(data, snapshot_file(self.base, name))
        yield name


def _latest_snapshot(items):
    from core.models import snapshot_order

    return max(items, key=snapshot_order)


# ----------------------------------------------------------------------------- the graph
class SafetyNet(beam.PTransform):
    """Inputs bundle -> outputs bundle; see the module docstring."""

    def __init__(self, policy: Optional[Policy] = None, mode: str = "batch",
                 label: Optional[str] = None, shards: int = DEFAULT_SHARDS,
                 chunk: Chunk = Chunk(), seeds: Optional[dict] = None,
                 seed_versions: tuple = (), versions_dir: Optional[str] = None,
                 handover: Optional[Handover] = None):
        super().__init__(label)
        self.handover = handover  # batch, a chunked replay: states carried on local disk
        self.policy = (policy or Policy()).validate()
        self.mode = mode
        self.shards = shards
        self.chunk = chunk
        self.seeds = seeds or {}
        if not seed_versions and self.policy.model_warm_start:
            from transforms.side import warm_versions

            seed_versions = warm_versions(self.policy)
        self.seed_versions = tuple(seed_versions)
        if mode == "stream" and versions_dir is None:
            import tempfile

            versions_dir = tempfile.mkdtemp(prefix="safetynet-versions-")
        self.versions_dir = versions_dir

    def _versions_view(self, pipeline, versions):
        """Batch: every version of the replay (and of the checkpoint) as a side input."""
        seeds = pipeline | "SeedVersions" >> beam.Create(list(self.seed_versions))
        both = (versions, seeds) | "AllVersions" >> beam.Flatten()
        return beam.pvalue.AsList(both)

    def expand(self, inputs: dict):
        pipeline = next(iter(inputs.values())).pipeline
        side = SideLoader(self.policy)
        streams = self._inputs(pipeline, inputs)
        states = []
        for st in STEPS:
            for g in globals_before(st.label):  # global selections (daily top-K)
                gin = tuple(streams[n] for n in g.inputs)
                streams[f"{g.label}:{g.output}"] = gin | g.label >> GLOBALS[g.label](
                    self.policy, side.for_mode(self.mode))
            out = self._step(pipeline, st, side, streams)
            for tag in (st.main, *st.tags):
                streams[f"{st.label}:{tag}"] = out[tag]
            if self.mode == "batch":
                states.append(out[STATE])
        return self._results(streams, states)

    def _inputs(self, pipeline, inputs: dict) -> dict:
        """The graph's inputs (an empty PCollection for a missing one) and the routers'
        branches, by stream name."""
        def given(name):
            if name in inputs:
                return inputs[name]
            return pipeline | f"No{name.title()}" >> beam.Create([])

        streams = {name: given(name) for name in INPUTS}
        for r in ROUTERS:
            split = streams[r.input] | f"Split{r.input.title()}" >> beam.ParDo(
                _Route(r.fn, r.branches[0])).with_outputs(*r.branches[1:],
                                                          main=r.branches[0])
            for b in r.branches:
                streams[f"{r.input}:{b}"] = split[b]
        return streams

    def _step(self, pipeline, st: Step, side: "SideLoader", streams: dict):
        """One keyed step of the graph as a RunMachine over its input streams (and its
        saved states); side data: the model versions (batch: a side input; stream: a
        poller of the versions directory)."""
        batch = self.mode == "batch"
        parts = tuple(streams[n] for n in st.inputs)
        if st.label in self.seeds:
            parts += (self.seeds[st.label],)
        view = poller = None
        if st.side is not None and batch:
            view = self._versions_view(pipeline, streams[st.side])
        elif st.side is not None:
            poller = VersionPoller(self.versions_dir)
        return parts | st.label >> RunMachine(
            _Make(st, self.policy, side, self.mode), self.mode, st.main, st.tags,
            label=st.label, ordering=self.policy.stream_ordering, shards=self.shards,
            key_fn=st.key, chunk=self.chunk if batch else Chunk(), side=view,
            poller=poller, handover=self.handover if batch else None)

    def _results(self, streams: dict, states: list) -> dict:
        """The graph's outputs by name; model versions published (stream) and snapshots
        written where the policy asks."""
        batch = self.mode == "batch"
        results = {name: streams[s] for name, s in RESULTS.items()}
        results["verdicts"] = streams["Score:scored_reports"] | "Verdicts" >> beam.Map(
            verdict_row)
        results["dead_letter"] = (tuple(streams[s] for s in DEAD_LETTERS)
                                  | "DeadLetters" >> beam.Flatten())
        if batch:
            results["state"] = tuple(states) | "States" >> beam.Flatten()
        else:
            for v in self.seed_versions:  # a restored state's versions: readable at start
                write_version(self.versions_dir, v)
            results["versions"] | "PublishVersions" >> PublishVersions(self.versions_dir)
        if self.policy.model_snapshot_path:
            snaps = results["snapshots"]
            if batch:  # only each model's last snapshot of the run
                snaps = snaps | "LastSnapshot" >> beam.CombinePerKey(_latest_snapshot)
            snaps | "WriteSnapshots" >> beam.ParDo(
                _WriteSnapshot(self.policy.model_snapshot_path))
        return results
