"""Six patches of Beam's local runner (BundleBasedDirectRunner), applied by the context
manager :func:`patched` around a local run and undone when it ends.

The stream driver runs the job for the local runner inside it, and the tests that run the
graph there do too; Dataflow and Flink never see them. All six replace private parts of
Beam, so :func:`patched` refuses any Beam version they were not written for
(:data:`WRITTEN_FOR`): read them against the new version's ``apache_beam/runners/direct``
before adding it.

1. Pub/Sub reading (bench/STREAMING.md, "Faults"): the stock read evaluator long-polls on
   the runner's one thread and raises on any Pub/Sub error, which the runner does not retry,
   so one emulator hiccup ended the job. The replacement pulls without waiting, up to
   ``PULL_MAX_MESSAGES`` at a time, and logs, waits and pulls again on an error.
2. DoFn specs: the runner recomputes a DoFn's state and timer specs (``inspect.signature``
   over every method) several times per bundle, two thirds of the job's CPU; they are
   declared on the class, so one answer per class is cached.
3. Watermarks and timers: after every bundle the runner walks, for each step, every element
   still waiting in its input (``_TransformWatermarks.refresh``, for their earliest
   timestamp; Beam's own TODO says so) and every key's timers
   (``extract_transform_timers``). With the tens of thousands of saved states a restored
   state checkpoint hands the steps at once, the job did nothing else for minutes (no
   message read). A waiting bundle's earliest timestamp is now computed once (a bundle is
   immutable once committed), and each key's state caches the time of its earliest
   event-time timer (dropped whenever its timers change): a key with nothing due is
   skipped without walking its timers.
4. Function signatures (:func:`remembered_signatures`): the runner makes a new DoFnRunner
   for every bundle, and each reads the parameters of every method of its DoFn again with
   ``inspect`` (about a fifth of a busy key's CPU, py-spy). A function's parameters and
   defaults never change, so each function's are read once.
5. DoFn copies: every bundle of every step starts from a fresh copy of its DoFn, made by a
   pickle round trip of the graph's DoFn (``pickler.roundtrip``; Beam's own TODO there
   suggests keeping the serialised form): a quarter of a TestStream run's CPU. The graph's
   DoFn is pickled once (it is not changed after the graph is built: setup runs on the
   copies), and each bundle still loads its own fresh copy from those bytes: the raw
   pickle, as Beam's ``roundtrip`` makes it (its ``dumps`` would bz2-compress and base64
   the bytes, which every bundle's load then undid: 15% of a TestStream run's CPU).
6. Empty bundles: every ParDo bundle commits one output bundle per output tag, empty or
   not, and the executor schedules each consumer for every one of them, so an empty bundle
   cascades down the graph (50 transfers through the graph: 85,285 bundles for 1,160
   elements and 353 timer firings). Beam's watermark manager already ignores empty output
   bundles ("they do not impact watermarks and should not trigger downstream
   execution"); the executor now skips them too. Timer firings and root bundles are
   scheduled by other paths and are untouched.
"""

from __future__ import annotations

import logging
import threading
import time
import types
import weakref
from contextlib import contextmanager
from typing import Callable, Iterator, Optional

import apache_beam as beam
from apache_beam.options.pipeline_options import StandardOptions

WRITTEN_FOR = ("2.77",)  # Beam major.minor versions whose internals these patches match
PULL_MAX_MESSAGES = 500
IDLE_PULL_PAUSE_S = 0.005

_LOG = logging.getLogger("safetynet.pubsub")
_lock = threading.Lock()
_active = {"depth": 0, "undo": []}  # nested patched() blocks share one application


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
            "check its patches against this version's apache_beam/runners/direct, "
            "then add the version to WRITTEN_FOR")


def runs_locally(pipeline: beam.Pipeline) -> bool:
    """Whether ``pipeline`` is meant for Beam's local runner (its options name no other)."""
    return is_local_runner(pipeline.options.view_as(StandardOptions).runner)


@contextmanager
def patched() -> Iterator[None]:
    """Apply the patches for the block (after checking Beam's version) and undo them when
    it ends. Nested blocks share the outermost one's patches."""
    check_version(beam.__version__)
    with _lock:
        if _active["depth"] == 0:
            _active["undo"] = [_patch_read_evaluator(), _patch_spec_cache(),
                               _patch_timer_index(), _patch_signatures(),
                               _patch_dofn_copies(), _patch_empty_bundles()]
        _active["depth"] += 1
    try:
        yield
    finally:
        with _lock:
            _active["depth"] -= 1
            if _active["depth"] == 0:
                for undo in reversed(_active["undo"]):
                    undo()
                _active["undo"] = []


def is_patched() -> bool:
    return _active["depth"] > 0


def _setattrs(owner, **values) -> Callable[[], None]:
    """Set attributes of ``owner``; returns what puts the previous ones back."""
    before = {name: owner.__dict__[name] for name in values if name in owner.__dict__}
    for name, value in values.items():
        setattr(owner, name, value)

    def undo():
        for name in values:
            if name in before:
                setattr(owner, name, before[name])
            else:
                delattr(owner, name)

    return undo


def _undo_all(undos: list) -> Callable[[], None]:
    def undo():
        for u in reversed(undos):
            u()

    return undo


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

        def __init__(self, evaluation_context, applied_ptransform, *args):
            # the local runner does not deduplicate: the graph's ``id_label`` (for
            # Dataflow) is set aside while the stock constructor, which refuses it, runs
            source = applied_ptransform.transform._source
            id_label, source.id_label = source.id_label, None
            try:
                super().__init__(evaluation_context, applied_ptransform, *args)
            finally:
                source.id_label = id_label

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


def _patch_read_evaluator() -> Callable[[], None]:
    """Read Pub/Sub with the resilient evaluator, through the evaluator registry's override
    table (``_test_evaluators_overrides``): the transform itself stays
    ``beam.io.ReadFromPubSub``, so the graph is the one that runs on Dataflow / Flink."""
    from apache_beam.runners.direct.direct_runner import _DirectReadFromPubSub
    from apache_beam.runners.direct.transform_evaluator import TransformEvaluatorRegistry

    overrides = dict(TransformEvaluatorRegistry._test_evaluators_overrides)
    overrides[_DirectReadFromPubSub] = _resilient_read_evaluator()
    return _setattrs(TransformEvaluatorRegistry, _test_evaluators_overrides=overrides)


# ---------------------------------------------------------------------- 2. DoFn specs
@contextmanager
def remembered_signatures() -> Iterator[None]:
    """While it lasts, Beam reads the parameters of each function once (patch 4; also
    usable alone around a batch pipeline, whose runner asks as often)."""
    undo = _patch_signatures()
    try:
        yield
    finally:
        undo()


def _patch_signatures() -> Callable[[], None]:
    """Remember ``core.get_function_args_defaults`` per function. Only plain functions and
    methods are remembered, by the function itself (a weak key): a DoFn pickled by value
    brings new function objects and is read afresh."""
    from apache_beam.transforms import core

    original = core.get_function_args_defaults
    seen: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def args_defaults(f):
        fn, bound = f, False
        if isinstance(f, types.MethodType) and isinstance(f.__func__, types.FunctionType):
            fn, bound = f.__func__, True
        if not isinstance(fn, types.FunctionType):
            return original(f)
        got = seen.get(fn, {})
        if bound not in got:
            got[bound] = original(f)
            seen[fn] = got
        names, defaults = got[bound]
        return list(names), list(defaults)

    return _setattrs(core, get_function_args_defaults=args_defaults)


class _PickledOnce:
    """Beam's ``pickler`` module as the ParDo evaluator sees it, but ``roundtrip`` pickles
    each object once (by identity, while it lives) and loads a fresh copy every call."""

    def __init__(self, pickler):
        self._pickler = pickler
        self._bytes: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def roundtrip(self, o):
        try:
            got = self._bytes.get(o)
        except TypeError:  # not weak-referenceable or not hashable: as Beam does
            return self._pickler.roundtrip(o)
        if got is None:
            got = self._bytes[o] = self._raw(o)
        lib, raw = got
        # the raw pickle, as Beam's own roundtrip makes it: its dumps() would compress and
        # base64 the bytes, and loads() undo both for every bundle (half the copy's cost)
        return lib._loads(raw) if lib is not None else self._pickler.loads(raw)

    def _raw(self, o) -> tuple:
        lib = getattr(self._pickler, "desired_pickle_lib", None)
        if lib is not None and hasattr(lib, "_dumps") and hasattr(lib, "_loads"):
            return lib, lib._dumps(o)
        return None, self._pickler.dumps(o)

    def __getattr__(self, name):
        return getattr(self._pickler, name)


def _patch_dofn_copies() -> Callable[[], None]:
    """The ParDo evaluator's per-bundle DoFn copy from bytes pickled once (patch 5)."""
    from apache_beam.runners.direct import transform_evaluator as te

    return _setattrs(te, pickler=_PickledOnce(te.pickler))


def _patch_empty_bundles() -> Callable[[], None]:
    """Consumers are not scheduled for an output bundle without elements (patch 6)."""
    from apache_beam.runners.direct.executor import _ExecutorServiceParallelExecutor as ex

    original = ex.schedule_consumers

    def schedule_consumers(self, committed_bundle) -> None:
        if committed_bundle.has_elements():
            original(self, committed_bundle)

    return _setattrs(ex, schedule_consumers=schedule_consumers)


def _patch_spec_cache() -> Callable[[], None]:
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

    return _undo_all([
        _setattrs(userstate, get_dofn_specs=get_dofn_specs, is_stateful_dofn=is_stateful_dofn),
        _setattrs(te, get_dofn_specs=get_dofn_specs, is_stateful_dofn=is_stateful_dofn)])


# ---------------------------------------------------------------------------- 3. timers
_DUE = "_safetynet_due"  # (earliest event-time timer, has a processing-time timer)


def _due(state):
    """(earliest event-time timer or None, any processing-time timer) of a key's state,
    cached on the state until its timers change."""
    from apache_beam.transforms.timeutil import TimeDomain

    got = state.__dict__.get(_DUE)
    if got is None:
        earliest, realtime = None, False
        for timers in state.timers.values():
            for (_, domain, _), ts in timers.items():
                if domain == TimeDomain.REAL_TIME:
                    realtime = True
                elif earliest is None or ts < earliest:
                    earliest = ts
        got = state.__dict__[_DUE] = (earliest, realtime)
    return got


def _patch_timer_index() -> Callable[[], None]:
    """Skip, when extracting due timers, every key whose earliest timer is after the
    watermark (see the module's docstring, 3)."""
    from apache_beam.runners.direct import evaluation_context as ec
    from apache_beam.runners.direct import watermark_manager as wm
    from apache_beam.transforms import trigger

    state_cls = trigger.InMemoryUnmergedState
    original_set, original_clear = state_cls.set_timer, state_cls.clear_timer
    original_get, original_copy = state_cls.get_timers, state_cls.copy

    def set_timer(self, *args, **kwargs):
        self.__dict__.pop(_DUE, None)
        return original_set(self, *args, **kwargs)

    def clear_timer(self, *args, **kwargs):
        self.__dict__.pop(_DUE, None)
        return original_clear(self, *args, **kwargs)

    def get_timers(self, clear=False, **kwargs):
        if clear:
            self.__dict__.pop(_DUE, None)
        return original_get(self, clear=clear, **kwargs)

    def copy(self):
        c = original_copy(self)
        c.__dict__.pop(_DUE, None)
        return c

    def extract_transform_timers(self):
        """Beam 2.77's method, looking only at the keys that may have a timer due."""
        with self._lock:
            fired_timers, has_realtime_timer = [], False
            watermark, now = self._input_watermark, self._clock.time()
            states = self._keyed_states
            keys = (states.due(watermark) if isinstance(states, _IndexedStates)
                    else list(states))
            for encoded_key in keys:
                timers, had_realtime_timer = states[encoded_key].get_timers(
                    watermark=watermark, processing_time=now)
                has_realtime_timer = has_realtime_timer or had_realtime_timer
                for window, (name, domain, timestamp, tag) in timers:
                    fired_timers.append(wm.TimerFiring(encoded_key, window, name, domain,
                                                       timestamp, dynamic_timer_tag=tag))
            self._fired_timers.update(fired_timers)
            return fired_timers, has_realtime_timer

    def _initialize_keyed_states(self, root_transforms, value_to_consumers):
        out = {t: _IndexedStates() for t in root_transforms}
        for consumers in value_to_consumers.values():
            out.update({c: _IndexedStates() for c in consumers})
        return out

    return _undo_all([
        _setattrs(state_cls, set_timer=set_timer, clear_timer=clear_timer,
                  get_timers=get_timers, copy=copy),
        _setattrs(ec.EvaluationContext, _initialize_keyed_states=_initialize_keyed_states),
        _setattrs(wm._TransformWatermarks, extract_transform_timers=extract_transform_timers,
                  refresh=_refresh)])


class _IndexedStates(dict):
    """One step's keyed states (encoded key -> state), indexed by each key's earliest
    timer. The runner replaces a key's state on every commit (``states[key] = new``),
    which marks the key for re-indexing; a full re-index every ``FULL_EVERY_S`` seconds
    catches any change made otherwise (none seen in Beam 2.77)."""

    FULL_EVERY_S = 30.0

    def __init__(self):
        super().__init__()
        self.dirty: set = set()
        self.heap: list = []  # (earliest event-time timer, sequence, key); may hold stale
        self.realtime: set = set()  # keys with a processing-time timer
        self.seq = 0
        self.full_at = 0.0

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        self.dirty.add(key)

    def due(self, watermark) -> set:
        """The keys that may have a timer at or before ``watermark`` (or a
        processing-time timer); each stays marked while it may have one."""
        import heapq

        now = time.monotonic()
        if now >= self.full_at:
            self.full_at = now + self.FULL_EVERY_S
            self.dirty.update(self.keys())
            self.heap, self.realtime = [], set()
        for key in self.dirty:
            state = self.get(key)
            if state is None:
                continue
            state.__dict__.pop(_DUE, None)
            earliest, realtime = _due(state)
            (self.realtime.add if realtime else self.realtime.discard)(key)
            if earliest is not None:
                self.seq += 1
                heapq.heappush(self.heap, (earliest, self.seq, key))
        self.dirty = set()
        out = set(self.realtime)
        while self.heap and self.heap[0][0] <= watermark:
            out.add(heapq.heappop(self.heap)[2])
        out.intersection_update(self.keys())
        self.dirty.update(out)  # looked at again next time, until their timers are gone
        return out


_MIN_TS = "_safetynet_min_ts"


def _earliest(bundle):
    """(any element, earliest timestamp) of a committed bundle, computed once."""
    got = bundle.__dict__.get(_MIN_TS)
    if got is None:
        from apache_beam.runners.direct.watermark_manager import WatermarkManager

        low, seen = WatermarkManager.WATERMARK_POS_INF, False
        for wv in bundle.get_elements_iterable():
            seen = True
            if wv.timestamp < low:
                low = wv.timestamp
        got = (seen, low)
        if getattr(bundle, "_committed", False):
            bundle.__dict__[_MIN_TS] = got
    return got


def _refresh(self) -> bool:
    """Beam 2.77's ``_TransformWatermarks.refresh`` with each waiting bundle's earliest
    timestamp computed once."""
    from apache_beam.runners.direct.watermark_manager import WatermarkManager
    from apache_beam.utils.timestamp import TIME_GRANULARITY

    with self._lock:
        low, pending = WatermarkManager.WATERMARK_POS_INF, False
        for input_bundle in self._pending:
            seen, ts = _earliest(input_bundle)
            pending = pending or seen
            if ts < low:
                low = ts
        holder = low - TIME_GRANULARITY if pending else WatermarkManager.WATERMARK_POS_INF
        producer = min([tw.output_watermark for tw in self._input_transform_watermarks]
                       + [WatermarkManager.WATERMARK_POS_INF])
        self._input_watermark = max(self._input_watermark, min(holder, producer))
        earliest_hold = min([WatermarkManager.WATERMARK_POS_INF,
                             *self._keyed_earliest_holds.values()])
        new_output_watermark = min(self._input_watermark, earliest_hold)
        advanced = new_output_watermark > self._output_watermark
        self._output_watermark = new_output_watermark
        return advanced
