"""connectors.local_runner: the patches of Beam's local runner refuse a Beam version they
were not written for, and building the stream graph for the local runner installs them."""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from connectors import local_runner


@pytest.mark.parametrize("version", ["2.77.0", "2.77.1", "2.77.0rc2"])
def test_the_versions_written_for_are_accepted(version):
    local_runner.check_version(version)


@pytest.mark.parametrize("version", ["2.78.0", "2.76.0", "3.77.0", "2.7.7", "2.770.0"])
def test_another_beam_version_is_refused_naming_it(version):
    with pytest.raises(local_runner.UnsupportedBeamVersion) as e:
        local_runner.check_version(version)
    assert f"Apache Beam {version}" in str(e.value) and "2.77.x" in str(e.value)


def test_install_refuses_before_patching_anything(monkeypatch):
    from apache_beam.transforms import userstate

    monkeypatch.setattr(local_runner, "_installed", False)
    monkeypatch.setattr(local_runner.beam, "__version__", "2.78.0")
    before = userstate.get_dofn_specs
    with pytest.raises(local_runner.UnsupportedBeamVersion, match="Apache Beam 2.78.0"):
        local_runner.install()
    assert userstate.get_dofn_specs is before and not local_runner._installed


def test_the_installed_beam_is_one_written_for():
    local_runner.check_version(beam.__version__)


def test_install_replaces_the_pubsub_read_evaluator_and_caches_dofn_specs():
    from apache_beam.runners.direct.direct_runner import _DirectReadFromPubSub
    from apache_beam.runners.direct.transform_evaluator import TransformEvaluatorRegistry
    from apache_beam.transforms import userstate

    local_runner.install()
    local_runner.install()  # once per process
    evaluator = TransformEvaluatorRegistry._test_evaluators_overrides[_DirectReadFromPubSub]
    assert evaluator.__name__ == "_ResilientPubSubReadEvaluator"

    class Stateless(beam.DoFn):
        def process(self, x):
            yield x

    fn = Stateless()
    assert userstate.get_dofn_specs(fn) is userstate.get_dofn_specs(fn)
    assert not userstate.is_stateful_dofn(fn)


@pytest.mark.parametrize("runner,local", [("BundleBasedDirectRunner", True),
                                          ("DataflowRunner", False)])
def test_the_stream_driver_installs_the_patches_for_the_local_runner_only(
        monkeypatch, runner, local):
    from pipelines import stream

    calls = []
    monkeypatch.setattr(local_runner, "install", lambda: calls.append(1))
    options = stream.build_options(["--project", "safetynet-test", "--runner", runner,
                                    "--use_models", "false"])
    # the graph only (a pipeline object that Dataflow's option checks do not see)
    stream.build(beam.Pipeline(options=PipelineOptions(["--streaming"])), options)
    assert calls == ([1] if local else [])


@pytest.mark.parametrize("runner,local", [(None, True), ("", True), ("direct", True),
                                          ("BundleBased", True), ("DirectRunner", True),
                                          ("BundleBasedDirectRunner", True),
                                          ("DataflowRunner", False), ("FlinkRunner", False)])
def test_is_local_runner(runner, local):
    assert local_runner.is_local_runner(runner) is local


def test_the_timer_index_returns_exactly_the_keys_with_a_timer_due():
    from apache_beam.transforms.timeutil import TimeDomain
    from apache_beam.transforms.trigger import InMemoryUnmergedState
    from apache_beam.utils.timestamp import Timestamp

    local_runner.install()

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
