"""The daily global selections as Beam composites: rule 11's :class:`Assessments` and
rule 12's :class:`CallCapacity`.

Their logic is plain Python in :mod:`core.assessments` and :mod:`core.capacity`
(the reference runs it without Beam); here it runs per event-time day window (streaming) or
with the day in the key (the backtest's batch face).
"""

from __future__ import annotations

from typing import Iterable

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms import trigger, window
from apache_beam.transforms.window import GlobalWindows
from apache_beam.utils.windowed_value import PaneInfoTiming

from core.assessments import (
    DaySignals,
    DayTop,
    PastLosses,
    add_signals,
    assess,
    transfer_signals,
)
from core.capacity import call_rank, downgrade, is_call, select_calls, window_capacity
from core.policy import Policy
from transforms.packed import Combiner, PackedCombine


# ------------------------------------------------------------------- rule 11: assessments
class _DayTopFn(beam.CombineFn):
    """:class:`core.assessments.DayTop` as a Beam combiner: (active, candidate or
    None) per user-day -> the day's chosen candidates."""

    def __init__(self, policy: Policy):
        self.top = DayTop(policy)

    def create_accumulator(self):
        return self.top.create()

    def add_input(self, acc, item):
        return self.top.add(acc, item)

    def merge_accumulators(self, accs):
        return self.top.merge(accs)

    def extract_output(self, acc):
        return self.top.extract(acc)


class _Candidates(beam.DoFn):
    """(user, day signals) in a day window -> (active, candidate or None) stamped at the
    day's last ms: every user-day counts towards the day's active users (rule 15)."""

    def __init__(self, policy: Policy, side):
        self.policy, self.side = policy, side

    def setup(self):
        self.profile_of = self.side.profile() if self.side is not None else (
            lambda _u: None)
        self.c_candidates = Metrics.counter("Assessments", "candidates")

    def _assess(self, user, signals, day_end: int) -> tuple:
        """(active, candidate or None) of a user's day."""
        s = DaySignals(*signals)
        c = assess(user, s, self.profile_of(user), self.policy, day_end)
        if c is not None:
            self.c_candidates.inc()
        return int(s.transfers > 0), c

    def process(self, kv, win=beam.DoFn.WindowParam):
        user, signals = kv
        day_end = win.end.micros // 1000 - 1
        yield window.TimestampedValue(self._assess(user, signals, day_end), day_end / 1000.0)


class _Chosen(beam.DoFn):
    def setup(self):
        self.c_chosen = Metrics.counter("Assessments", "chosen")

    def process(self, top):
        self.c_chosen.inc(len(top))
        for req in top:
            yield window.TimestampedValue(req, req.event_time / 1000.0)


def _signals_of_transfer(policy: Policy):
    # plain tuples of ints across the shuffle: Beam's fast coder, not a pickle per element
    def fn(st):
        return st.featured.transfer.user_id, tuple(transfer_signals(st, policy))
    return fn


def _add_plain(parts: Iterable[tuple]) -> tuple:
    return tuple(add_signals(parts))


def _signals_of_losses(m: PastLosses):
    return m.user_id, tuple(DaySignals(past_losses=m.n))


class Assessments(beam.PTransform):
    """(scored transfers, past losses) -> RISK_ASSESSMENT OutreachRequests, at most
    ``assessments_per_day`` per day window, in the global window (for the Outreach step).
    ``side`` provides the profiles (``side.profile()``: a lookup by user id, as
    ``core.graph.Side``); None: no profiles."""

    def __init__(self, policy: Policy, side=None, label=None):
        super().__init__(label)
        self.policy, self.side = policy, side

    def expand(self, inputs):
        scored, losses = inputs
        p = self.policy
        if p.assessments_per_day == 0:
            return scored.pipeline | "NoAssessments" >> beam.Create([])
        if self.side is not None and self.side.mode == "batch":
            return self._batch(scored, losses)
        from_transfers = scored | "TransferSignals" >> beam.Map(_signals_of_transfer(p))
        from_losses = losses | "LossSignals" >> beam.Map(_signals_of_losses)
        return (
            (from_transfers, from_losses) | "Signals" >> beam.Flatten()
            | "Days" >> beam.WindowInto(window.FixedWindows(p.day_ms / 1000.0))
            | "PerUserDay" >> beam.CombinePerKey(_add_plain)
            | "Candidates" >> beam.ParDo(_Candidates(p, self.side))
            | "TopPerDay" >> beam.CombineGlobally(_DayTopFn(p)).without_defaults()
            | "Chosen" >> beam.ParDo(_Chosen())
            | "BackToGlobal" >> beam.WindowInto(window.GlobalWindows()))


    def _batch(self, scored, losses):
        """The batch face (a bounded replay in the global window): the same selection with
        the day in the key instead of a window, each user-day's signals summed in
        :class:`transforms.packed.PackedCombine` (a few packed dicts cross the shuffle,
        not an element per transfer), then each shard's candidates into one partial
        ranking per day, merged per day. Beam's Python runners group non-global windows
        through a generic trigger driver (measured: ~30 s of a 65 s backtest on the
        default simulator data, for ~100k user-days); a global-window key is cheap."""
        p = self.policy
        d = p.day_ms
        n = len(DaySignals._fields)

        def of_transfer(st, t_ms):
            yield (st.featured.transfer.user_id, t_ms // d), transfer_signals(st, p)

        def of_losses(m, t_ms):
            yield (m.user_id, t_ms // d), DaySignals(past_losses=m.n)

        return (
            (scored, losses)
            | "PerUserDay" >> PackedCombine(
                (of_transfer, of_losses), Combiner(lambda: [0] * n, _add_into, _add_into),
                _ShardCandidates(p, self.side))
            | "TopPerDay" >> beam.GroupByKey()
            | "Chosen" >> beam.ParDo(_ChosenOfDay(p)))


def _add_into(acc: list, signals) -> list:
    """A user-day's signal sums, one more added (integers: any grouping gives the same)."""
    for i, v in enumerate(signals):
        acc[i] += v
    return acc


class _ShardCandidates(_Candidates):
    """Batch face: a shard's ``{(user, day): signal sums}`` -> ``(day, DayTop partial)``
    per day: every user-day counts towards its day's active users (rule 15), its
    candidate (if any) towards the day's ranking."""

    def __init__(self, policy: Policy, side):
        super().__init__(policy, side)
        self.top = DayTop(policy)
        self.ready = False

    def __call__(self, _shard: int, sums: dict):
        if not self.ready:  # the side data, once per worker (as a DoFn's setup)
            self.setup()
            self.ready = True
        top, days = self.top, {}
        for (user, day), acc in sums.items():
            item = self._assess(user, acc, (day + 1) * self.policy.day_ms - 1)
            got = days.get(day)
            days[day] = top.add(top.create() if got is None else got, item)
        for day in sorted(days):
            yield GlobalWindows.windowed_value((day, days[day]))


class _ChosenOfDay(_Chosen):
    """Batch face: ``(day, [DayTop partials])`` -> the day's chosen requests."""

    def __init__(self, policy: Policy):
        super().__init__()
        self.top = DayTop(policy)

    def process(self, kv):
        yield from super().process(self.top.extract(self.top.merge(kv[1])))


# ---------------------------------------------------------------- rule 12: call capacity
class _Select(beam.DoFn):
    """One window's calls -> called and downgraded (a late pane: all downgraded)."""

    def __init__(self, policy: Policy):
        self.policy = policy

    def setup(self):
        self.c_asked = Metrics.counter("CallCapacity", "calls_asked")
        self.c_made = Metrics.counter("CallCapacity", "calls_made")
        self.c_down = Metrics.counter("CallCapacity", "calls_downgraded")

    def process(self, kv, win=beam.DoFn.WindowParam, pane=beam.DoFn.PaneInfoParam):
        calls = list(kv[1])
        if pane is not None and pane.timing == PaneInfoTiming.LATE:
            called = []
            down = [downgrade(o, "call_capacity:late") for o in sorted(calls, key=call_rank)]
        else:
            cap = window_capacity(self.policy, win.start.micros // 1000)
            called, down = select_calls(calls, cap)
        self.c_asked.inc(len(calls))
        self.c_made.inc(len(called))
        self.c_down.inc(len(down))
        for o in called + down:
            yield window.TimestampedValue(o, o.created_at / 1000.0)


class CallCapacity(beam.PTransform):
    """Outreach (all kinds) -> the same outreach with rule 12 applied to the CALLs."""

    def __init__(self, policy: Policy, label=None):
        super().__init__(label)
        self.policy = policy

    def expand(self, outreach):
        if isinstance(outreach, (tuple, list)):  # the graph passes its inputs as a tuple
            (outreach,) = outreach
        p = self.policy
        parts = outreach | "SplitCalls" >> beam.Partition(
            lambda o, n: 0 if is_call(o) else 1, 2)
        calls, rest = parts[0], parts[1]
        decided = (
            calls
            | "CallWindows" >> beam.WindowInto(
                window.FixedWindows(p.call_slot_ms / 1000.0),
                trigger=trigger.AfterWatermark(late=trigger.AfterCount(1)),
                accumulation_mode=trigger.AccumulationMode.DISCARDING,
                allowed_lateness=p.lookback_ms / 1000.0)
            | "OneKeyPerWindow" >> beam.Map(lambda o: (0, o))
            | "GroupCalls" >> beam.GroupByKey()
            | "SelectCalls" >> beam.ParDo(_Select(p))
            | "BackToGlobal" >> beam.WindowInto(window.GlobalWindows()))
        return (rest, decided) | "Merge" >> beam.Flatten()
