"""Batch face: a per-key combine whose shuffle moves a few packed dicts, not every element.

Beam's ``CombinePerKey`` on the FnApiRunner encodes and decodes every (key, partial)
across its shuffle and calls the combiner's Python functions through the SDK's
per-element machinery. For the backtest's daily assessments (rule 11: one element per
scored transfer, one partial per user-day) and its fan-in counts (one per transfer) that
was hundreds of thousands of elements per 200k transfers. :class:`PackedCombine` does the
same combine as :class:`transforms.faces.RunMachine` does its shuffles: each producing
bundle adds its elements into one ``{key: accumulator}`` dict per shard of the key space,
the dicts cross the GroupByKey (pickled, or as tokens of an in-process table under
:func:`transforms.faces.local_shuffles`), and each shard merges its dicts and hands the
result to ``finish``.

The combiner is a :class:`Combiner`: ``create()``, ``add(acc, value) -> acc``,
``merge(acc, other) -> acc``. The result must not depend on the grouping (as for any
Beam combiner: integer sums, set unions), so it is the one ``CombinePerKey`` gives.
Global window only (a bounded replay).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, NamedTuple

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindows

from transforms.faces import packing_locally, parcel, shard_of, unpack


class Combiner(NamedTuple):
    """A combine's functions: a fresh accumulator, one value added, two merged."""

    create: Callable[[], Any]
    add: Callable[[Any, Any], Any]
    merge: Callable[[Any, Any], Any]


class _PackAdd(beam.DoFn):
    """Elements -> per bundle, one ``(shard, {key: accumulator})`` per shard.
    ``pairs(element, t_ms)`` gives the element's ``(key, value)`` pairs."""

    def __init__(self, shards: int, pairs: Callable, combiner: Combiner):
        self.shards, self.pairs, self.combiner = shards, pairs, combiner
        self.local = packing_locally()

    def start_bundle(self):
        self.dicts: dict = {}

    def process(self, element, ts=beam.DoFn.TimestampParam):
        create, add, shards = self.combiner.create, self.combiner.add, self.shards
        t_ms = ts.micros // 1000
        for key, value in self.pairs(element, t_ms):
            shard = shard_of(key, shards)
            d = self.dicts.get(shard)
            if d is None:
                d = self.dicts[shard] = {}
            acc = d.get(key)
            d[key] = add(create() if acc is None else acc, value)

    def finish_bundle(self):
        dicts, self.dicts = self.dicts, {}
        for shard, d in dicts.items():
            yield GlobalWindows.windowed_value((shard, parcel(d, self.local)))


class _MergeShard(beam.DoFn):
    """A shard's dicts merged -> ``finish(shard, {key: accumulator})``'s outputs."""

    def __init__(self, combiner: Combiner, finish: Callable[[int, dict], Iterable]):
        self.combiner, self.finish = combiner, finish

    def process(self, kv):
        merge = self.combiner.merge
        out: dict = {}
        for blob in kv[1]:
            for key, acc in unpack(blob).items():
                got = out.get(key)
                out[key] = acc if got is None else merge(got, acc)
        yield from self.finish(kv[0], out)


class PackedCombine(beam.PTransform):
    """One or more PCollections, each with its ``pairs(element, t_ms)`` function ->
    ``finish(shard, {key: combined accumulator})``'s outputs, one call per shard of the
    keys. The inputs are packed in their producers, before the Flatten."""

    def __init__(self, pairs: tuple, combiner: Combiner,
                 finish: Callable[[int, dict], Iterable], shards: int = 16):
        super().__init__()
        self.pairs, self.combiner, self.finish, self.shards = pairs, combiner, finish, shards

    def expand(self, parts):
        parts = tuple(parts) if isinstance(parts, (tuple, list)) else (parts,)
        if len(parts) != len(self.pairs):
            raise ValueError(f"{len(parts)} inputs but {len(self.pairs)} pairs functions")
        packed = [pc | f"Pack{i}" >> beam.ParDo(_PackAdd(self.shards, fn, self.combiner))
                  for i, (pc, fn) in enumerate(zip(parts, self.pairs, strict=True))]
        if len(packed) > 1:
            packed = packed | "In" >> beam.Flatten()
        else:
            packed = packed[0]
        return (packed | "GroupByKey" >> beam.GroupByKey()
                | "Merge" >> beam.ParDo(_MergeShard(self.combiner, self.finish)))
