"""connectors.local_runner: the patches of Beam's local runner refuse a Beam version they
were not written for, are applied inside ``patched()`` only and undone when it ends, and the
stream graph's Pub/Sub transforms follow the pipeline's runner without a flag."""

from __future__ import annotations

import apache_beam as beam
import pytest

from connectors import local_runner


@pytest.mark.parametrize("version", ["2.77.0", "2.77.1", "2.77.0rc2"])
def test_the_versions_written_for_are_accepted(version):
    local_runner.check_version(version)


@pytest.mark.parametrize("version", ["2.78.0", "2.76.0", "3.77.0", "2.7.7", "2.770.0"])
def test_another_beam_version_is_refused_naming_it(version):
    with pytest.raises(local_runner.UnsupportedBeamVersion) as e:
        local_runner.check_version(version)
    assert f"Apache Beam {version}" in str(e.value) and "2.77.x" in str(e.value)


def test_patched_refuses_before_patching_anything(monkeypatch):
    from apache_beam.transforms import userstate

    monkeypatch.setattr(local_runner.beam, "__version__", "2.78.0")
    before = userstate.get_dofn_specs
    with pytest.raises(local_runner.UnsupportedBeamVersion, match="Apache Beam 2.78.0"):
        with local_runner.patched():
            pass
    assert userstate.get_dofn_specs is before and not local_runner.is_patched()


def test_the_installed_beam_is_one_written_for():
    local_runner.check_version(beam.__version__)


def _beam_internals() -> dict:
    from apache_beam.runners.direct import evaluation_context as ec
    from apache_beam.runners.direct import executor as ex
    from apache_beam.runners.direct import transform_evaluator as te
    from apache_beam.runners.direct import watermark_manager as wm
    from apache_beam.transforms import trigger, userstate

    state = trigger.InMemoryUnmergedState
    return {"overrides": te.TransformEvaluatorRegistry._test_evaluators_overrides,
            "specs": userstate.get_dofn_specs, "te_specs": te.get_dofn_specs,
            "stateful": userstate.is_stateful_dofn, "set_timer": state.set_timer,
            "clear_timer": state.clear_timer, "get_timers": state.get_timers,
            "copy": state.copy, "keyed": ec.EvaluationContext._initialize_keyed_states,
            "extract": wm._TransformWatermarks.extract_transform_timers,
            "refresh": wm._TransformWatermarks.refresh, "pickler": te.pickler,
            "consumers": ex._ExecutorServiceParallelExecutor.schedule_consumers}


def test_patched_replaces_the_pubsub_read_evaluator_and_caches_dofn_specs_inside_only():
    from apache_beam.runners.direct.direct_runner import _DirectReadFromPubSub
    from apache_beam.runners.direct.transform_evaluator import TransformEvaluatorRegistry
    from apache_beam.transforms import userstate

    class Stateless(beam.DoFn):
        def process(self, x):
            yield x

    before = _beam_internals()
    with local_runner.patched():
        with local_runner.patched():  # nested: one application
            during = _beam_internals()
        assert _beam_internals() == during and local_runner.is_patched()
        evaluator = TransformEvaluatorRegistry._test_evaluators_overrides[_DirectReadFromPubSub]
        assert evaluator.__name__ == "_ResilientPubSubReadEvaluator"
        fn = Stateless()
        assert userstate.get_dofn_specs(fn) is userstate.get_dofn_specs(fn)
        assert not userstate.is_stateful_dofn(fn)
    assert all(during[k] is not before[k] for k in before)
    assert _beam_internals() == before and not local_runner.is_patched()


class _Counting(beam.DoFn):
    """A DoFn that counts how often it is pickled."""
    pickled = 0

    def __init__(self, tag):
        self.tag = tag

    def __getstate__(self):
        type(self).pickled += 1
        return {"tag": self.tag}

    def process(self, x):
        yield x


def test_patched_pickles_a_dofn_once_and_gives_each_bundle_a_fresh_copy():
    from apache_beam.runners.direct import transform_evaluator as te

    fn, _Counting.pickled = _Counting("mine"), 0
    with local_runner.patched():
        copies = [te.pickler.roundtrip(fn) for _ in range(3)]
    assert _Counting.pickled == 1
    assert len({id(c) for c in copies} | {id(fn)}) == 4
    assert [c.tag for c in copies] == ["mine"] * 3
    _Counting.pickled = 0
    te.pickler.roundtrip(fn)
    te.pickler.roundtrip(fn)
    assert _Counting.pickled == 2  # undone: Beam pickles per copy again


def test_patched_undoes_the_patches_when_the_run_fails():
    before = _beam_internals()
    with pytest.raises(RuntimeError, match="the run failed"):
        with local_runner.patched():
            raise RuntimeError("the run failed")
    assert _beam_internals() == before


def _transform_types(p: beam.Pipeline) -> set:
    seen = set()

    class Visitor(beam.pipeline.PipelineVisitor):
        def visit_transform(self, node):
            seen.add(type(node.transform).__name__)
            if isinstance(node.transform, beam.ParDo):
                seen.add(type(node.transform.fn).__name__)
            if isinstance(node.transform, beam.io.ReadFromPubSub):
                seen.add(f"id_label={node.transform._source.id_label}")

        enter_composite_transform = visit_transform

    p.visit(Visitor())
    return seen


@pytest.mark.parametrize("runner,local", [("BundleBasedDirectRunner", True),
                                          ("FlinkRunner", False)])
def test_the_stream_graph_publishes_as_its_pipelines_runner_needs(runner, local):
    from pipelines import stream

    options = stream.build_options(["--project", "safetynet-test", "--runner", runner,
                                    "--use_models", "false"])
    p = beam.Pipeline(options=options)
    stream.build(p, options)  # the graph only: building applies no patch
    assert not local_runner.is_patched()
    seen = _transform_types(p)
    assert "id_label=record_id" in seen  # the same read everywhere
    assert ("ResilientPublishFn" in seen) is local
    assert ("WriteToPubSub" in seen) is not local


@pytest.mark.parametrize("runner,local", [(None, True), ("", True), ("direct", True),
                                          ("BundleBased", True), ("DirectRunner", True),
                                          ("BundleBasedDirectRunner", True),
                                          ("DataflowRunner", False), ("FlinkRunner", False)])
def test_is_local_runner(runner, local):
    assert local_runner.is_local_runner(runner) is local


@pytest.fixture
def patches():
    with local_runner.patched():
        yield


def test_the_timer_index_returns_exactly_the_keys_with_a_timer_due(patches):
    from apache_beam.transforms.timeutil import TimeDomain
    from apache_beam.transforms.trigger import InMemoryUnmergedState
    from apache_beam.utils.timestamp import Timestamp

    def state(*times):
        s = InMemoryUnmergedState()
        for i, t in enumerate(times):
            s.set_timer("w", f"t{i}", TimeDomain.WATERMARK, Timestamp.of(t))
        return s

    states = local_runner._IndexedStates()
    states[b"early"], states[b"late"], states[b"none"] = state(5, 50), state(20), state()
    assert states.due(Timestamp.of(10)) == {b"early"}
    assert states.due(Timestamp.of(10)) == {b"early"}  # still due until its timer is gone
    states[b"early"] = state(30)  # the runner commits a new state after the firing
    states[b"late"] = state(8)  # re-indexed on commit: now due
    assert states.due(Timestamp.of(10)) == {b"late"}
    assert states.due(Timestamp.of(40)) == {b"early", b"late"}


class _Bundles(beam.DoFn):
    """Counts the bundles it starts (copies of it share the class's counter)."""
    started = 0

    def start_bundle(self):
        type(self).started += 1

    def process(self, x):
        yield x


def _filtered_stream_bundles() -> int:
    """Runs 1, 2, 3 then 4 through a filter keeping 4 on the local streaming runner;
    returns how many bundles the step after the filter started."""
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.testing.test_stream import TestStream
    from apache_beam.testing.util import assert_that, equal_to

    _Bundles.started = 0
    ts = (TestStream().add_elements([1, 2, 3]).advance_watermark_to(10)
          .add_elements([5]).advance_watermark_to(20).add_elements([4])
          .advance_watermark_to_infinity())
    opts = PipelineOptions(["--runner=BundleBasedDirectRunner", "--streaming"])
    with beam.Pipeline(options=opts) as p:
        out = p | ts | beam.Filter(lambda x: x == 4) | beam.ParDo(_Bundles())
        assert_that(out, equal_to([4]))
    return _Bundles.started


def test_patched_starts_no_bundle_downstream_of_an_empty_one():
    with local_runner.patched():
        inside = _filtered_stream_bundles()
    outside = _filtered_stream_bundles()
    assert inside == 1  # only the bundle that holds 4
    assert outside > inside  # Beam alone: one per bundle the filter ran, empty or not
