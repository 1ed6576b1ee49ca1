"""The batch face's packed combine (``transforms.packed.PackedCombine``): each shard of the
keys gets every key's values of every input combined once, whether the packed dicts cross
the shuffle pickled (several processes) or as in-process tokens (``local_shuffles``)."""

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import GlobalWindows

from transforms.faces import local_shuffles, shard_of
from transforms.packed import Combiner, PackedCombine

SHARDS = 4


def _words(element, t_ms):
    for w in element.split():
        yield w, 1


def _lengths(element, t_ms):
    yield element[0], t_ms


def _finish(shard, sums):
    for key, total in sums.items():
        assert shard_of(key, SHARDS) == shard  # every key on its own shard only
        yield GlobalWindows.windowed_value((key, total))


def _add(acc, v):
    return acc + v


@pytest.mark.parametrize("local", [False, True])
def test_each_key_combined_once_over_every_input_and_bundle(local):
    lines = ["a b a", "c a", "b"] * 50
    more = ["a", "cc", "b"]
    expected = {"a": 150 + 1000, "b": 100 + 3000, "c": 50 + 2000}
    with local_shuffles(local), TestPipeline(runner="FnApiRunner") as p:
        one = p | "Lines" >> beam.Create(lines) | "Split" >> beam.Reshuffle()
        two = (p | "More" >> beam.Create(list(enumerate(more, 1)))
               | "Stamp" >> beam.Map(lambda iv: beam.window.TimestampedValue(iv[1], iv[0])))
        got = (one, two) | PackedCombine((_words, _lengths),
                                         Combiner(int, _add, _add), _finish, shards=SHARDS)
        assert_that(got, equal_to(sorted(expected.items())))


def test_one_pairs_function_per_input():
    one = TestPipeline(runner="FnApiRunner") | beam.Create(["a"])
    with pytest.raises(ValueError, match="2 inputs but 1 pairs"):
        (one, one) | PackedCombine((_words,), Combiner(int, _add, _add), _finish)
