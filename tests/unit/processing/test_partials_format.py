"""Partials metadata: format 2 (the measure registry) and the format-1 files already in lakes.

``data/partials_format1/<metric>.parquet`` were written by the code before the
registry (commit 5e8df39) from :func:`v1_events`, with
``aggregate(events_table(v1_events()), load_metrics(), watermark_ms=T0 + MINUTE)``
and ``encode_parquet``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chalicelib.processing import (aggregate, decode_parquet, finalize, hll, load_metrics, merge_partials,
                                   partials_schema)
from chalicelib.processing.errors import PartialsError
from chalicelib.processing.partials import METADATA_KEY, read_description
from tests.factories.processing import MINUTE, T0, event, events_table

DATA = Path(__file__).parent / "data" / "partials_format1"
METRICS = load_metrics()
V1_METRICS = ("event_counts", "class_activity", "region_activity", "active_users_5m")


def v1_events():
    events = []
    for i in range(40):
        attrs = {"character_class": ["mage", "rogue"][i % 2], "value": (i % 7) * 1.25}
        if i % 5 == 0:
            attrs = {"lat": 52.52, "lon": 13.405}
        events.append(event(i, event_type=["level_up", "gps_ping"][i % 5 == 0], user_id=f"u{i % 9}",
                            event_time=T0 + (i * 7919) % (3 * MINUTE), attributes=attrs))
    return events


@pytest.fixture(scope="module")
def now(con):
    return aggregate(events_table(v1_events()), METRICS, watermark_ms=T0 + MINUTE, con=con)


def old(name: str):
    table = decode_parquet((DATA / f"{name}.parquet").read_bytes())
    assert json.loads(table.schema.metadata[METADATA_KEY])["format"] == 1
    return table


def registers_of(table):
    """The HLL registers of each row's sketch (an exact set's from its hashes): what format 1 kept."""
    row, reg, rank = hll.decode(table.column("user_id__hll"))
    return sorted(zip(row.tolist(), reg.tolist(), rank.tolist()))


@pytest.mark.parametrize("name", V1_METRICS)
def test_format_1_partials_have_the_columns_format_2_writes_but_the_exact_count(name, now):
    newer = now[name].drop_columns(["user_id__exact"])  # optional state, added with the exact sketches
    assert [(f.name, f.type, f.nullable) for f in old(name).schema] == \
        [(f.name, f.type, f.nullable) for f in newer.schema]
    assert old(name).schema.names == [n for n in partials_schema(METRICS[name]).names if n != "user_id__exact"]
    # Same states; the sketches are format-1 registers there and exact sets of hashes now, with equal registers.
    assert old(name).drop_columns(["user_id__hll"]).to_pylist() == newer.drop_columns(["user_id__hll"]).to_pylist()
    assert registers_of(old(name)) == registers_of(newer)


@pytest.mark.parametrize("name", V1_METRICS)
def test_format_1_partials_finalize_and_merge_with_format_2(name, now):
    assert finalize(old(name)).to_pylist() == finalize(now[name]).to_pylist()
    assert read_description(old(name)) == read_description(now[name])  # read in the format-2 shape
    mixed = merge_partials([old(name), now[name]])
    same = merge_partials([now[name], now[name]])
    # A register sketch (format 1) merged with an exact one gives registers: the same registers.
    assert mixed.drop_columns(["user_id__hll"]).to_pylist() == same.drop_columns(["user_id__hll"]).to_pylist()
    assert registers_of(mixed) == registers_of(same)
    assert finalize(mixed).to_pylist() == finalize(same).to_pylist()  # 9 users: no register collision


def test_unknown_formats_measures_and_sketch_parameters_are_refused(now):
    table = now["match_duration"] if now["match_duration"].num_rows else now["class_activity"]
    desc = json.loads(partials_schema(METRICS["match_duration"]).metadata[METADATA_KEY])

    def with_desc(changed):
        return table.replace_schema_metadata({METADATA_KEY: json.dumps(changed).encode()})

    with pytest.raises(PartialsError, match="unsupported partials format 3"):
        read_description(with_desc({**desc, "format": 3}))
    with pytest.raises(PartialsError, match="unknown measure"):
        read_description(with_desc({**desc, "measures": [{"name": "x", "func": "median", "state": "a"}]}))
    with pytest.raises(PartialsError, match="cannot be read by this version"):
        read_description(with_desc({**desc, "params": {"ddsketch": {**desc["params"]["ddsketch"], "alpha": 0.02}}}))
    with pytest.raises(PartialsError, match="unknown state"):
        read_description(with_desc({**desc, "states": [["attributes_value", "tdigest"]]}))
