"""The names of the inputs and outputs (``schemas.streams``) agree with what uses them."""

from pathlib import Path

from core import events
from schemas import streams
from schemas.rows import ROW_TYPES, BlacklistUpdate, HoldResolution, Transfer

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"


def test_every_named_stream_has_a_record_type_and_an_avro_schema():
    for record in {**streams.REPLAY_FILES, **streams.OUTPUTS}.values():
        assert record in ROW_TYPES
        assert (SCHEMAS / f"{record}.avsc").is_file()


def test_every_output_file_has_a_sort_key_of_its_own_fields():
    for name, record in streams.OUTPUTS.items():
        time_field, id_field = streams.FILE_ORDER[name]
        assert {time_field, id_field} <= set(ROW_TYPES[record]._fields)


def test_publish_order_is_the_pipelines_kind_order():
    # at equal event times the simulator publishes in the order the machines process
    record_of = {ROW_TYPES[r]: n for n, r in streams.INPUTS.items()}
    by_rank = sorted(record_of, key=lambda t: events._RANKS[t])
    assert [record_of[t] for t in by_rank] == list(streams.PUBLISH_ORDER[1:])
    assert streams.PUBLISH_ORDER[0] == streams.PROFILES


def test_record_ids_tell_records_apart_and_repeat_for_a_duplicate():
    add = BlacklistUpdate("0xabc", "ETH", "ADD", 1000, "vendor", None)
    remove = add._replace(action="REMOVE")
    assert streams.record_id(add) != streams.record_id(remove)  # same address and time
    assert streams.record_id(add) == streams.record_id(add._replace())
    t = Transfer(*(["t-1"] + [None] * (len(Transfer._fields) - 1)))
    assert streams.record_id(t) == "t-1"
    released = HoldResolution(*(["h-1"] + [None] * (len(HoldResolution._fields) - 1)))
    assert streams.record_id(released._replace(resolution="RELEASED")) != streams.record_id(
        released._replace(resolution="REFUNDED"))
