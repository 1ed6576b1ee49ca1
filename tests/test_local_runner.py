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


def test_the_timer_scan_finds_what_the_stock_one_finds():
    """The replacement of the runner's timer scan (patch 3) fires the same timers, in the
    same order, as Beam's own: keys without timers, timers due and not yet due in event
    time, and a processing-time timer."""
    from apache_beam.runners.direct.clock import TestClock
    from apache_beam.runners.direct.evaluation_context import DirectUnmergedState
    from apache_beam.runners.direct.watermark_manager import _TransformWatermarks
    from apache_beam.transforms.timeutil import TimeDomain
    from apache_beam.transforms.window import GlobalWindow
    from apache_beam.utils.timestamp import Timestamp

    local_runner.install()
    states = {}
    for k in range(12):
        st = DirectUnmergedState()
        if k % 3:
            st.set_timer(GlobalWindow(), "user/deadline", TimeDomain.WATERMARK,
                         Timestamp(micros=k * 1000))
        if k == 5:
            st.set_timer(GlobalWindow(), "user/poll", TimeDomain.REAL_TIME, Timestamp(3))
        states[b"k%d" % k] = st

    def scan(fn):
        tw = _TransformWatermarks(TestClock(), states, None)
        tw._input_watermark = Timestamp(micros=5000)  # k5 due exactly at it
        fired, realtime = fn(tw)
        return [(f.encoded_key, f.name, f.time_domain, f.timestamp) for f in fired], realtime

    got = scan(_TransformWatermarks.extract_transform_timers)
    assert got == scan(_TransformWatermarks.stock_extract_transform_timers)
    assert [k for k, *_ in got[0]] == [b"k1", b"k2", b"k4", b"k5"] and got[1] is True
