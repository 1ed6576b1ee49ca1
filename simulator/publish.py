"""Publish a replay directory to Pub/Sub in event-time order, on an accelerated clock.

``publish_replay(directory, project, topics, speedup)`` merges the input files named in
``topics`` (``transfers``, ``reports``, ``outcomes``, ``blacklist``, ``profiles`` -> topic)
by event time (``heapq.merge``; at equal times: profiles, blacklist, outcomes, reports,
transfers, as in DESIGN.md) and publishes one message per record:

* payload: ``codecs.encode_json(row)`` (``fmt="json"``) or ``codecs.encode_avro(row)``
  (``fmt="avro"``). What the file holds is published as is, malformed records included
  (a non-finite double is written as the JSON token ``NaN`` / ``Infinity``), so the
  streaming job's dead-letter path sees them; ``garbage=N`` adds N unparseable payloads.
* attributes: ``event_time`` (epoch ms, decimal string) and ``record_id`` (``streams.record_id``:
  the same id the streaming job uses; a duplicate delivery has its original's record_id).
* pacing: the wall delay between two messages is their event-time gap / ``speedup``
  (``math.inf``: no waiting). Records whose time is before the replay's start (old profiles)
  go out at once.
* re-timing (``retime_to_ms``): every timestamp field of each row (``event_time``,
  ``created_time``) becomes ``retime_to_ms + (t - t0) / speedup`` where ``t0`` is the
  replay's first event time (the earliest first event of the non-profile files), so that
  durations shrink by the same factor as the wall clock (a 24h hold lasts 24h/speedup, and
  an account that was 300 days old is 300/speedup days old). Timestamps outside the valid
  range (years 2000..2100, i.e. malformed ones) are left as they are.

Files are read raw (fastavro / pyarrow, no validation), in the order they were written; for
merging, a record whose time is invalid or earlier than its predecessor's (a duplicate
delivered late) keeps its file position: it sorts at its predecessor's time.
"""

from __future__ import annotations

import heapq
import itertools
import json
import math
import time
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple, Optional

from schemas import codecs
from schemas.rows import FIELDS, ROW_TYPES
from schemas.streams import PUBLISH_ORDER as ORDER
from schemas.streams import REPLAY_FILES, record_id

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
GARBAGE_JSON = (b"{not json", b"\xff\xfe\x00\x01garbage", b'{"transfer_id": "t1", "event_',
                b"\x00\x00\x00")
GARBAGE_AVRO = (b"\x02", b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", b"\x80")


class Message(NamedTuple):
    """One message to publish: which input it belongs to, bytes, attributes, and when."""

    name: str
    data: bytes
    attributes: dict
    event_time: int  # the (monotone) merge key, before re-timing
    garbage: bool = False


def _ms(v: Any) -> Any:
    if isinstance(v, datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=timezone.utc)
        delta = v - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
    return v


def read_raw(path: str | Path, record: str) -> Iterator[Any]:
    """Rows of an ``.avro`` / ``.parquet`` file exactly as stored (no validation)."""
    p = Path(path)
    row_type = ROW_TYPES[record]
    names = [f[0] for f in FIELDS[record]]
    times = [f[0] for f in FIELDS[record] if f[1] == "timestamp"]
    if p.suffix == ".avro":
        import fastavro

        with open(p, "rb") as fo:
            for rec in fastavro.reader(fo):
                for t in times:
                    rec[t] = _ms(rec.get(t))
                yield row_type(*(rec.get(n) for n in names))
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(str(p))
    for rb in pf.iter_batches(batch_size=8192):
        cols = []
        for n in names:
            col = rb.column(n)
            if pa.types.is_timestamp(col.type):
                col = col.cast(pa.int64())
            cols.append(col.to_pylist())
        for vals in zip(*cols, strict=True):
            yield row_type(*vals)


def _keyed(name: str, path: Path) -> Iterator[tuple]:
    record = REPLAY_FILES[name]
    tfield = "created_time" if record == "UserProfile" else "event_time"
    rank = ORDER.index(name)
    prev: Optional[int] = None
    for seq, row in enumerate(read_raw(path, record)):
        t = getattr(row, tfield)
        ok = type(t) is int and codecs.MIN_TS <= t <= codecs.MAX_TS
        if prev is None:
            key = t if ok else codecs.MIN_TS
        else:
            key = t if ok and t >= prev else prev
        prev = key
        yield key, rank, seq, name, row


def _retime(row: Any, t0: int, speedup: float, retime_to: int) -> Any:
    changes = {}
    for field in ("event_time", "created_time"):
        t = getattr(row, field, None)
        if type(t) is int and codecs.MIN_TS <= t <= codecs.MAX_TS:
            changes[field] = retime_to + (round((t - t0) / speedup) if math.isfinite(speedup)
                                          else 0)
    return row._replace(**changes) if changes else row


def _encode(row: Any, fmt: str) -> bytes:
    if fmt == "avro":
        return codecs.encode_avro(row)
    try:
        return codecs.encode_json(row)
    except ValueError:  # a malformed row with a non-finite double: publish it anyway
        return json.dumps(codecs.to_wire(row), ensure_ascii=False,
                          separators=(",", ":")).encode("utf-8")


def plan_messages(directory: str | Path, names: list[str], fmt: str = "json",
                  speedup: float = 1.0, retime_to_ms: Optional[int] = None,
                  limit: Optional[int] = None, garbage: int = 0) -> Iterator[Message]:
    """The messages ``publish_replay`` sends, in order (no Pub/Sub needed)."""
    if fmt not in ("json", "avro"):
        raise ValueError(f"fmt must be 'json' or 'avro', got {fmt!r}")
    if not speedup > 0:
        raise ValueError(f"speedup must be > 0, got {speedup}")
    streams = []
    for name in names:
        if name not in REPLAY_FILES:
            raise ValueError(f"unknown input {name!r} (expected one of {', '.join(ORDER)})")
        path = codecs.find_input(directory, name)
        if path is None:
            raise FileNotFoundError(f"{directory}: no {name}.avro or {name}.parquet")
        streams.append(_keyed(name, path))
    # t0: the earliest first event of the event files (profiles start years earlier)
    heads = []
    for i, s in enumerate(streams):
        first = next(s, None)
        if first is not None:
            heads.append(first)
            streams[i] = itertools.chain([first], s)
    event_heads = [h[0] for h in heads if h[3] != "profiles"] or [h[0] for h in heads]
    t0 = min(event_heads) if event_heads else 0
    junk = GARBAGE_AVRO if fmt == "avro" else GARBAGE_JSON
    published = 0
    for key, _, _, name, row in heapq.merge(*streams):
        if limit is not None and published >= limit:
            return
        if retime_to_ms is not None:
            row = _retime(row, t0, speedup, retime_to_ms)
        t = row.created_time if name == "profiles" else row.event_time
        attrs = {"event_time": str(t), "record_id": record_id(row)}
        yield Message(name, _encode(row, fmt), attrs, key)
        if published < garbage:
            yield Message(names[published % len(names)], junk[published % len(junk)],
                          {"event_time": str(t), "record_id": f"garbage-{published}"}, key,
                          True)
        published += 1
    for i in range(published, garbage):  # fewer records than garbage asked for
        yield Message(names[i % len(names)], junk[i % len(junk)],
                      {"event_time": str(t0), "record_id": f"garbage-{i}"}, t0, True)


def publish_replay(directory: str | Path, project: str, topics: Mapping[str, str],
                   speedup: float, fmt: str = "json", retime_to_ms: Optional[int] = None,
                   limit: Optional[int] = None, garbage: int = 0,
                   publisher: Any = None) -> dict[str, int]:
    """Publish the inputs named in ``topics`` (input name -> topic name or full path).

    Returns the number of messages published per input name; unparseable payloads asked
    for with ``garbage`` are counted under ``"<name>:garbage"``. Uses a new
    ``PublisherClient`` (``connectors.pubsub_client``; the emulator when
    PUBSUB_EMULATOR_HOST is set) unless a ``publisher`` is given; topics are created with
    ``connectors.pubsub_client.create_topics`` / ``create_resources``.
    """
    if publisher is None:
        from connectors.pubsub_client import publisher_client

        publisher = publisher_client()
    paths = {name: (topic if "/" in topic else publisher.topic_path(project, topic))
             for name, topic in topics.items()}
    names = [n for n in ORDER if n in paths] + [n for n in paths if n not in ORDER]
    counts = {n: 0 for n in names}
    pending: list = []
    wall0: Optional[float] = None
    t0: Optional[int] = None
    for msg in plan_messages(directory, names, fmt, speedup, retime_to_ms, limit, garbage):
        if math.isfinite(speedup) and msg.name != "profiles":
            now = time.monotonic()
            if wall0 is None:
                wall0, t0 = now, msg.event_time
            wait = wall0 + (msg.event_time - t0) / speedup / 1000.0 - now
            if wait > 0:
                time.sleep(wait)  # the accelerated replay clock
        pending.append(publisher.publish(paths[msg.name], msg.data, **msg.attributes))
        key = f"{msg.name}:garbage" if msg.garbage else msg.name
        counts[key] = counts.get(key, 0) + 1
        if len(pending) >= 1000:
            for f in pending:
                f.result()
            pending = []
    for f in pending:
        f.result()
    return counts
