"""Three patches of Beam's local runner (BundleBasedDirectRunner), installed by ``install()``.

The stream driver installs them when it builds the job for the local runner, and the tests
that run the graph there do too; Dataflow and Flink never see them. Both replace private
parts of Beam, so ``install()`` refuses any Beam version they were not written for
(:data:`WRITTEN_FOR`): read them against the new version's ``apache_beam/runners/direct``
before adding it.

1. Pub/Sub reading (bench/STREAMING.md, "Faults"): the stock read evaluator long-polls on
   the runner's one thread and raises on any Pub/Sub error, which the runner does not retry,
   so one emulator hiccup ended the job. The replacement pulls without waiting, up to
   ``PULL_MAX_MESSAGES`` at a time, and logs, waits and pulls again on an error.
2. DoFn specs: the runner recomputes a DoFn's state and timer specs (``inspect.signature``
   over every method) several times per bundle, two thirds of the job's CPU; they are
   declared on the class, so one answer per class is cached.
3. Timer scan: at every watermark advance the runner looks for due timers in every key any
   stateful step ever saw, through a generic per-key call that also reads the clock; the
   replacement skips the keys without timers and reads the clock only for processing-time
   timers (same timers found, same order).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Optional

import apache_beam as beam

WRITTEN_FOR = ("2.77",)  # Beam major.minor versions whose internals these patches match
PULL_MAX_MESSAGES = 500
IDLE_PULL_PAUSE_S = 0.005

_LOG = logging.getLogger("safetynet.pubsub")
_lock = threading.Lock()
_installed = False


class UnsupportedBeamVersion(RuntimeError):
    pass


def is_local_runner(runner: Optional[str]) -> bool:
    r = str(runner or "")
    return r == "" or "DirectRunner" in r or r in ("direct", "BundleBased")


def check_version(version: str) -> None:
    """Raise :class:`UnsupportedBeamVersion` unless ``version`` is one written for."""
    if ".".join(version.split(".")[:2]) not in WRITTEN_FOR:
        raise UnsupportedBeamVersion(
            f"connectors/local_runner.py patches Beam's local runner for Apache Beam "
            f"{' / '.join(v + '.x' for v in WRITTEN_FOR)} and refuses Apache Beam {version}: "
            "check its two patches against this version's apache_beam/runners/direct, "
            "then add the version to WRITTEN_FOR")


def install() -> None:
    """Install the patches (once per process) after checking Beam's version."""
    global _installed
    check_version(beam.__version__)
    with _lock:
        if _installed:
            return
        _install_read_evaluator()
        _install_spec_cache()
        _install_timer_scan()
        _installed = True


# ------------------------------------------------------------------- 1. Pub/Sub reading
def _timestamped(message, timestamp_attribute: Optional[str]):
    """(timestamp, PubsubMessage) of a pulled message: its ``timestamp_attribute`` (epoch ms
    or RFC 3339), else its publish time, else now."""
    from apache_beam.io.gcp.pubsub import PubsubMessage
    from apache_beam.utils.timestamp import Timestamp

    parsed = PubsubMessage._from_message(message)
    raw = (parsed.attributes or {}).get(timestamp_attribute) if timestamp_attribute else None
    ts = None
    if raw is not None:
        try:
            ts = Timestamp(micros=int(raw) * 1000)
        except ValueError:
            try:
                ts = Timestamp.from_rfc3339(raw)
            except ValueError:
                ts = None
    if ts is None:
        try:
            ts = Timestamp.from_utc_datetime(message.publish_time)
        except Exception:  # no usable publish time either
            ts = Timestamp.of(time.time())
    return ts, parsed


def _resilient_read_evaluator():
    """The class replacing the stock local Pub/Sub read evaluator."""
    from apache_beam.runners.direct.transform_evaluator import _PubSubReadEvaluator

    class _ResilientPubSubReadEvaluator(_PubSubReadEvaluator):
        """The stock local Pub/Sub read, made to survive outages.

        * a pull error (emulator down, subscription deleted) logs, waits a little and
          returns no messages: the job goes on and pulls again;
        * a missing or unreadable ``event_time`` attribute falls back to the publish
          time (the payload's own event_time re-stamps the row in Parse, and a bad
          payload becomes a dead letter) instead of failing the job;
        * pulls up to ``PULL_MAX_MESSAGES`` per bundle (the stock reader pulls 10).

        Like the stock reader it acknowledges what it pulled at once: Beam's local
        runner keeps everything in memory, so a message in flight when the process
        dies is lost (see bench/STREAMING.md, "Faults").
        """

        _errors: dict = {}

        def _read_from_pubsub(self, timestamp_attribute):
            client = self._get_subscriber_client(self._applied_ptransform)
            try:
                # Beam's local executor runs on ONE thread: a long-polling pull (the
                # stock reader waits up to 30 s on an empty subscription) stalls the
                # whole job, so pull without waiting and idle briefly instead.
                response = client.pull(
                    request={"subscription": self._sub_name,
                             "max_messages": PULL_MAX_MESSAGES,
                             "return_immediately": True}, timeout=10)
                received = list(response.received_messages)
                if not received:
                    time.sleep(IDLE_PULL_PAUSE_S)
                if received:
                    client.acknowledge(subscription=self._sub_name,
                                       ack_ids=[rm.ack_id for rm in received])
            except Exception as e:  # noqa: BLE001 — any Pub/Sub failure: retry later
                self._note_error(e)
                time.sleep(1.0)
                return []
            if self._errors.pop(self._sub_name, None) is not None:
                _LOG.warning("Pub/Sub read of %s recovered", self._sub_name)
            return [_timestamped(rm.message, timestamp_attribute) for rm in received]

        def _note_error(self, e):
            first = self._errors.get(self._sub_name)
            now = time.monotonic()
            if first is None or now - first > 10:
                self._errors[self._sub_name] = now
                _LOG.warning("Pub/Sub read of %s failed, retrying: %s",
                             self._sub_name, str(e).splitlines()[0][:200])

    return _ResilientPubSubReadEvaluator


def _install_read_evaluator() -> None:
    """Read Pub/Sub with the resilient evaluator, through the evaluator registry's override
    table (``_test_evaluators_overrides``): the transform itself stays
    ``beam.io.ReadFromPubSub``, so the graph is the one that runs on Dataflow / Flink."""
    from apache_beam.runners.direct.direct_runner import _DirectReadFromPubSub
    from apache_beam.runners.direct.transform_evaluator import TransformEvaluatorRegistry

    overrides = dict(TransformEvaluatorRegistry._test_evaluators_overrides)
    overrides[_DirectReadFromPubSub] = _resilient_read_evaluator()
    TransformEvaluatorRegistry._test_evaluators_overrides = overrides


# ---------------------------------------------------------------------- 2. DoFn specs
def _install_spec_cache() -> None:
    """Cache ``userstate.get_dofn_specs`` per DoFn class.

    The BundleBasedDirectRunner asks for a DoFn's state and timer specs several times per
    bundle (scheduling, ``start_bundle``, the DoFnRunner), and each call walks every method
    of the DoFn with ``inspect.signature``: measured with py-spy it was two thirds of the
    job's CPU, which made a decision take ~8 s instead of well under a second. Specs are
    declared on the class (``StateParam`` / ``TimerParam`` defaults), so one answer per class
    is exact.
    """
    from apache_beam.runners.direct import transform_evaluator as te
    from apache_beam.transforms import userstate

    original = userstate.get_dofn_specs
    cache: dict = {}

    def get_dofn_specs(dofn):
        key = type(dofn)
        got = cache.get(key)
        if got is None:
            got = cache[key] = original(dofn)
        return got

    def is_stateful_dofn(dofn):
        states, timers = get_dofn_specs(dofn)
        return bool(states or timers)

    userstate.get_dofn_specs = get_dofn_specs
    userstate.is_stateful_dofn = is_stateful_dofn
    te.get_dofn_specs = get_dofn_specs
    te.is_stateful_dofn = is_stateful_dofn


# ----------------------------------------------------------------------- 3. timer scan
def _install_timer_scan() -> None:
    """Replace ``_TransformWatermarks.extract_transform_timers``.

    The stock one calls ``state.get_timers`` for every key the step has ever seen (keyed
    state is never dropped), evaluating the clock for each, at every watermark advance:
    with thousands of keys it was most of a streaming test's time (bench/README.md,
    "Streaming state"). This one finds the same due timers, in the same order, but skips a
    key without timers at the cost of one attribute read."""
    from apache_beam.runners.direct import watermark_manager as wm
    from apache_beam.runners.direct.util import TimerFiring
    from apache_beam.transforms.timeutil import TimeDomain

    real_time = TimeDomain.REAL_TIME

    def extract_transform_timers(self):
        with self._lock:
            fired = []
            has_realtime_timer = False
            watermark, now = self._input_watermark.micros, None  # ints compare fast
            for encoded_key, state in self._keyed_states.items():
                if not state.timers:
                    continue
                for window, timers in list(state.timers.items()):
                    for (name, domain, tag), ts in list(timers.items()):
                        if domain == real_time:
                            has_realtime_timer = True
                            if now is None:
                                now = self._clock.time()
                            due = ts <= now
                        else:
                            due = ts.micros <= watermark
                        if due:
                            fired.append(TimerFiring(encoded_key, window, name, domain, ts,
                                                     dynamic_timer_tag=tag))
            self._fired_timers.update(fired)
            return fired, has_realtime_timer

    tw = wm._TransformWatermarks
    if not hasattr(tw, "stock_extract_transform_timers"):
        tw.stock_extract_transform_timers = tw.extract_transform_timers
    tw.extract_transform_timers = extract_transform_timers
