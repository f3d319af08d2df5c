"""aggregate / merge_partials / finalize / encode_parquet on small examples."""

from __future__ import annotations

import pytest

from chalicelib.processing import (PartialsError, aggregate, aggregate_metric, decode_records, encode_parquet,
                                   finalize, load_metrics, merge_partials, parse_metrics)
from chalicelib.processing.partials import decode_parquet, partials_schema
from tests.factories.processing import MINUTE, T0, event, events_table, kinesis_record, line

METRICS = load_metrics()
NEVER = -(2**62)  # a watermark that closes no window


def rows(table, *columns):
    return [tuple(r[c] for c in columns) for r in finalize(table).to_pylist()]


def test_event_counts_counts_events_and_distinct_users_per_app_type_and_minute(con):
    evs = [event(0, user_id="u1"), event(1, user_id="u1"), event(2, user_id="u2"),
           event(3, event_type="purchase", user_id=None), event(4, app_id="app-2"),
           event(5, event_time=T0 + MINUTE + 5)]
    out = aggregate_metric(events_table(evs), METRICS["event_counts"], watermark_ms=NEVER, con=con)
    assert rows(out, "app_id", "window_start", "window_end", "event_type", "count", "users") == [
        ("app-1", T0, T0 + MINUTE, "level_up", 3, 2),
        ("app-1", T0, T0 + MINUTE, "purchase", 1, 0),
        ("app-1", T0 + MINUTE, T0 + 2 * MINUTE, "level_up", 1, 1),
        ("app-2", T0, T0 + MINUTE, "level_up", 1, 1),
    ]
    assert out.schema == partials_schema(METRICS["event_counts"])


def test_class_activity_only_sees_events_with_a_class_and_ignores_non_numeric_values(con):
    evs = [event(0, attributes={"character_class": "mage", "value": 10}),
           event(1, attributes={"character_class": "mage", "value": 2.5}),
           event(2, attributes={"character_class": "mage", "value": "lots"}),
           event(3, attributes={"character_class": "rogue"}),
           event(4, attributes={"value": 99})]
    out = aggregate_metric(events_table(evs), METRICS["class_activity"], watermark_ms=NEVER, con=con)
    assert rows(out, "character_class", "count", "value_sum", "value_min", "value_max", "value_avg", "users") == [
        ("mage", 3, 12.5, 2.5, 10.0, 6.25, 3),
        ("rogue", 1, None, None, None, None, 1),
    ]


def test_region_activity_groups_gps_pings_by_geohash5(con):
    evs = [event(0, event_type="gps_ping", attributes={"lat": 52.52, "lon": 13.405}),
           event(1, event_type="gps_ping", attributes={"lat": 52.5201, "lon": 13.4051}),
           event(2, event_type="gps_ping", attributes={"lat": -33.87, "lon": 151.21}),
           event(3, event_type="gps_ping", attributes={"lat": "north", "lon": 1}),
           event(4, event_type="level_up", attributes={"lat": 1.0, "lon": 1.0})]
    out = aggregate_metric(events_table(evs), METRICS["region_activity"], watermark_ms=NEVER, con=con)
    assert rows(out, "geohash5", "count", "users") == [("r3gx2", 1, 1), ("u33dc", 2, 2)]


def test_active_users_5m_counts_a_user_in_the_five_windows_containing_the_event(con):
    evs = [event(0, user_id="u1", event_time=T0 + 30_000), event(1, user_id="u2", event_time=T0 + MINUTE + 1),
           event(2, user_id="u1", event_time=T0 + MINUTE + 2)]
    out = aggregate_metric(events_table(evs), METRICS["active_users_5m"], watermark_ms=NEVER, con=con)
    got = rows(out, "window_start", "window_end", "users")
    assert got == [(T0 + k * MINUTE, T0 + k * MINUTE + 5 * MINUTE, 1 if k == -4 else 2) for k in range(-4, 2)]


def test_late_count_counts_events_of_windows_the_watermark_has_closed(con):
    evs = [event(0), event(1), event(2, event_time=T0 + MINUTE)]
    out = aggregate_metric(events_table(evs), METRICS["event_counts"], watermark_ms=T0 + MINUTE, con=con)
    assert rows(out, "window_start", "count", "late_count") == [(T0, 2, 2), (T0 + MINUTE, 1, 0)]


def test_event_older_than_max_lateness_before_its_own_arrival_is_too_late():
    from chalicelib.processing import split_too_late
    evs = events_table([event(0, event_time=T0 - 8 * 86_400_000), event(1), event(2, event_time=T0 - 10),
                        # 8 days old by the clock of a later batch, but it arrived on time: kept.
                        event(3, event_time=T0 - 8 * 86_400_000, received_at=T0 - 8 * 86_400_000 + 5)])
    kept, too_late = split_too_late(evs, max_lateness_ms=7 * 86_400_000)
    assert kept.column("event_id").to_pylist() == ["e1", "e2", "e3"]
    assert too_late.column("event_id").to_pylist() == ["e0"]


def test_a_future_event_time_counts_for_the_watermark_only_up_to_its_arrival():
    from chalicelib.processing import max_event_time_seen, watermark
    evs = events_table([event(0, event_time=T0 + 3_600_000, received_at=T0), event(1, event_time=T0 - 5)])
    assert max_event_time_seen(evs) == T0
    assert watermark(max_event_time_seen(evs), 5 * MINUTE) == T0 - 5 * MINUTE
    assert watermark(None, 5 * MINUTE) < -(2 ** 61)


CUSTOM = parse_metrics({"metrics": [
    {"name": "by_user", "window": {"tumbling": "1h"}, "key": ["user_id"], "measures": {"n": "count"}},
    {"name": "ios_level", "window": {"tumbling": "1m"},
     "filter": {"equals": {"attributes.platform": "ios", "attributes.level": 3, "attributes.vip": True}},
     "measures": {"n": "count", "levels": "distinct(attributes.level)", "lvl": "max(attributes.level)"}},
]})


def test_null_key_values_form_their_own_group_sorted_last(con):
    evs = [event(0, user_id=None), event(1, user_id="b"), event(2, user_id="a"), event(3, user_id=None)]
    out = aggregate_metric(events_table(evs), CUSTOM["by_user"], watermark_ms=NEVER, con=con)
    assert rows(out, "user_id", "n") == [("a", 1), ("b", 1), (None, 2)]


def test_equality_filters_on_strings_numbers_and_booleans(con):
    evs = [event(0, attributes={"platform": "ios", "level": 3, "vip": True}),
           event(1, attributes={"platform": "ios", "level": 3.0, "vip": True}),
           event(2, attributes={"platform": "android", "level": 3, "vip": True}),
           event(3, attributes={"platform": "ios", "level": 4, "vip": True}),
           event(4, attributes={"platform": "ios", "level": 3, "vip": False})]
    out = aggregate_metric(events_table(evs), CUSTOM["ios_level"], watermark_ms=NEVER, con=con)
    assert rows(out, "n", "levels", "lvl") == [(2, 2, 3.0)]  # "3" and "3.0" are distinct texts


def test_decoded_events_with_parsed_attributes_give_the_same_partials(con):
    evs = [event(i, event_type=t, attributes=a, user_id=f"u{i % 3}") for i, (t, a) in enumerate([
        ("level_up", {"character_class": "mage", "value": 1.5}), ("gps_ping", {"lat": 1.0, "lon": 2.0}),
        ("purchase", {"character_class": "rogue", "value": 4}), ("chat", {})])]
    decoded = decode_records([kinesis_record([line(e) for e in evs], 1)],
                             attribute_types=METRICS.attribute_types, con=con).events
    a = aggregate(decoded, METRICS, watermark_ms=T0, con=con)
    b = aggregate(events_table(evs), METRICS, watermark_ms=T0, con=con)
    assert {k: v.to_pylist() for k, v in a.items()} == {k: v.to_pylist() for k, v in b.items()}


def test_partials_survive_parquet_and_merge_after_the_round_trip(con):
    ping = {"lat": 10.0, "lon": 10.0, "character_class": "mage"}
    first = aggregate(events_table([event(0, user_id="a", event_type="gps_ping", attributes=ping),
                                    event(1, user_id="b", event_type="gps_ping", attributes=ping)]),
                      METRICS, watermark_ms=NEVER, con=con)
    second = aggregate(events_table([event(2, user_id="a", event_type="gps_ping", attributes=ping),
                                     event(3, user_id="c", event_type="gps_ping", attributes=ping)]),
                       METRICS, watermark_ms=NEVER, con=con)
    for name in [m.name for m in METRICS.metrics if "users" in {x.name for x in m.measures}]:
        restored = [decode_parquet(encode_parquet(first[name])), decode_parquet(encode_parquet(second[name],
                                                                                            "snappy"))]
        assert restored[0].schema == first[name].schema  # metadata kept
        merged = finalize(merge_partials(restored))
        assert merged.column("users").to_pylist()[0] == 3


def test_merging_partials_of_different_metrics_is_refused(con):
    out = aggregate(events_table([event(0)]), METRICS, watermark_ms=NEVER, con=con)
    with pytest.raises(PartialsError, match="different definitions"):
        merge_partials([out["event_counts"], out["region_activity"]])
    with pytest.raises(PartialsError, match="metadata"):
        merge_partials([out["event_counts"].replace_schema_metadata(None)])


def test_empty_events_give_empty_partials(con):
    out = aggregate(events_table([]), METRICS, watermark_ms=NEVER, con=con)
    assert {k: v.num_rows for k, v in out.items()} == dict.fromkeys(METRICS.names, 0)
    assert finalize(out["class_activity"]).num_rows == 0


def test_process_batch_goes_from_lambda_records_to_partials_and_bad_rows():
    from chalicelib.processing import process_batch
    old = event(9, event_time=T0 - 8 * 86_400_000)
    records = [kinesis_record([line(event(0, attributes={"character_class": "mage", "value": 3})),
                               line(event(1, event_type="gps_ping", attributes={"lat": 1.5, "lon": 2.5})),
                               line(old), b"not json"], 5)]
    result = process_batch(records, METRICS, max_event_time_before=None)
    assert result.event_count == 2
    assert [(b.sequence_number, b.line_index) for b in result.bad] == [("5", 3)]
    assert result.too_late.column("event_id").to_pylist() == ["e9"]
    assert set(result.partials) == set(METRICS.names)
    for name, table in result.partials.items():
        assert decode_parquet(encode_parquet(table)).to_pylist() == table.to_pylist()
    assert result.max_event_time == max(event(0)["event_time"], event(1)["event_time"])
    assert rows(result.partials["class_activity"], "character_class", "value_avg") == [("mage", 3.0)]


def test_group_ids_stay_correct_when_the_key_space_overflows_int64():
    import numpy as np
    from chalicelib.processing.partials import combine_codes
    rng = np.random.default_rng(1)
    a, b, c = (rng.integers(0, 2**40, 500), rng.integers(0, 3, 500), rng.integers(0, 2**40, 500))
    a[::7], c[::7] = a[0], c[0]  # some repeated groups
    gid, n_groups, first = combine_codes([(a, 2**40), (b, 3), (c, 2**40)])
    keys = list(zip(a.tolist(), b.tolist(), c.tolist()))
    ordered = sorted(set(keys))
    assert n_groups == len(ordered)
    assert [ordered[g] for g in gid.tolist()] == keys  # groups numbered in lexicographic order
    assert [keys[f] for f in first.tolist()] == ordered


def test_bad_attribute_types_are_refused_with_a_typed_error():
    from chalicelib.processing import InvalidArgumentError
    with pytest.raises(InvalidArgumentError, match="attribute_types"):
        decode_records([], attribute_types={"x'); DROP": "VARCHAR"})
