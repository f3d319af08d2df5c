"""metrics.yaml: the shipped definitions and MetricConfigError messages."""

from __future__ import annotations

import copy

import pytest

from chalicelib.processing.errors import MetricConfigError
from chalicelib.processing.metric_config import (Field, GeohashExpr, LatenessSettings, load_metrics, parse_metrics,
                                                 parse_metrics_yaml)
from chalicelib.processing.windows import WindowSpec

MINUTE = 60_000
GOOD = {
    "version": 1,
    "metrics": [{
        "name": "m1",
        "filter": {"event_types": ["purchase"], "has": ["attributes.sku"], "equals": {"attributes.platform": "ios"}},
        "key": ["attributes.sku"],
        "window": {"tumbling": "1m"},
        "measures": {"count": "count", "revenue": "sum(attributes.price)", "buyers": "distinct(user_id)"},
    }],
}


def with_change(path: list, value, doc=None):
    doc = copy.deepcopy(doc or GOOD)
    target = doc
    for step in path[:-1]:
        target = target[step]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc


def test_shipped_config_defines_exactly_the_five_metrics():
    metrics = load_metrics()
    assert metrics.names == ("event_counts", "class_activity", "region_activity", "active_users_5m",
                             "match_duration")
    assert metrics.settings == LatenessSettings(allowed_lateness_ms=5 * MINUTE, max_lateness_ms=7 * 86_400_000)


def test_shipped_event_counts_is_count_and_users_per_event_type_per_minute():
    m = load_metrics()["event_counts"]
    assert m.window == WindowSpec.tumbling(MINUTE)
    assert [(k.name, k.expr) for k in m.keys] == [("event_type", Field("event_type"))]
    assert [(x.name, x.func, x.field) for x in m.measures] == [("count", "count", None),
                                                             ("users", "distinct", Field("user_id"))]


def test_shipped_class_activity_has_value_measures_for_events_with_a_class():
    m = load_metrics()["class_activity"]
    assert [c.op for c in m.filter.conditions] == ["has"]
    assert m.filter.conditions[0].field == Field("attributes.character_class")
    assert [k.name for k in m.keys] == ["character_class"]
    assert [(x.name, x.func) for x in m.measures] == [
        ("count", "count"), ("value_sum", "sum"), ("value_min", "min"), ("value_max", "max"),
        ("value_avg", "avg"), ("users", "distinct")]
    value = Field("attributes.value")
    assert m.states == ((value, "sum"), (value, "n"), (value, "min"), (value, "max"), (Field("user_id"), "hll"),
                        (Field("user_id"), "exact"))


def test_shipped_match_duration_has_three_percentiles_sharing_one_sketch():
    m = load_metrics()["match_duration"]
    assert m.filter.event_types == ("match_end",)
    assert m.window == WindowSpec.tumbling(5 * MINUTE)
    assert [(x.name, x.func, x.args) for x in m.measures] == [
        ("count", "count", ()), ("duration_p50", "percentile", ("50",)), ("duration_p90", "percentile", ("90",)),
        ("duration_p99", "percentile", ("99",))]
    assert m.states == ((Field("attributes.value"), "ddsketch"),)
    assert m.measures[3].expression == "percentile(attributes.value, 99)"


def test_shipped_region_activity_keys_gps_pings_by_geohash5():
    m = load_metrics()["region_activity"]
    assert m.filter.event_types == ("gps_ping",)
    assert m.keys[0].name == "geohash5"
    assert m.keys[0].expr == GeohashExpr(Field("attributes.lat"), Field("attributes.lon"), 5)


def test_shipped_active_users_5m_is_a_keyless_hopping_window():
    m = load_metrics()["active_users_5m"]
    assert m.window == WindowSpec.hopping(5 * MINUTE, MINUTE)
    assert m.keys == ()
    assert [(x.name, x.func) for x in m.measures] == [("users", "distinct")]


def test_attribute_types_say_how_decode_should_parse_attributes():
    assert load_metrics().attribute_types == {"character_class": "VARCHAR", "lat": "DOUBLE", "lon": "DOUBLE",
                                              "value": "DOUBLE"}


def test_a_good_custom_metric_parses():
    metric = parse_metrics(GOOD)["m1"]
    assert [c.op for c in metric.filter.conditions] == ["has", "equals"]
    assert metric.filter.conditions[1].value == "ios"


@pytest.mark.parametrize("path,value,field,words", [
    (["metrics", 0, "window"], {"tumbling": "1 minute"}, "window.tumbling", "duration"),
    (["metrics", 0, "window"], {"tumbling": "1m", "hopping": {"size": "5m", "slide": "1m"}}, "window", "exactly one"),
    (["metrics", 0, "window"], {"hopping": {"size": "5m", "slide": "2m"}}, "window.hopping.slide", "multiple"),
    (["metrics", 0, "window"], {"hopping": {"size": "5m"}}, "window.hopping.slide", "required"),
    (["metrics", 0, "window"], KeyError, "window", "exactly one"),
    (["metrics", 0, "measures"], {"avg_sku": "avg(attributes.sku)", "x": "median(attributes.price)"},
     "measures.x", "unknown aggregate"),
    (["metrics", 0, "measures"], {"total": "sum(user_id)"}, "measures.total", "is a string"),
    (["metrics", 0, "measures"], {"window_start": "count"}, "measures.window_start", "measure name"),
    (["metrics", 0, "measures"], {"bad__name": "count"}, "measures.bad__name", "measure name"),
    (["metrics", 0, "measures"], {"n": "distinct(event_time)"}, "measures.n", "string field"),
    (["metrics", 0, "measures"], {"n": "sum(attributes.a.b)"}, "measures.n", "unknown field"),
    (["metrics", 0, "measures"], {"n": "sum(attributes.price, 2)"}, "measures.n", "takes one field"),
    (["metrics", 0, "measures"], {"p": "percentile(attributes.price)"}, "measures.p", "percentile(<numeric field>"),
    (["metrics", 0, "measures"], {"p": "percentile(attributes.price, 101)"}, "measures.p", "from 0 to 100"),
    (["metrics", 0, "measures"], {"p": "percentile(attributes.price, 99.12345)"}, "measures.p", "4 decimals"),
    (["metrics", 0, "measures"], {"p": "percentile(attributes.price, -1)"}, "measures.p", "e.g. percentile"),
    (["metrics", 0, "measures"], {"p": "percentile(attributes.price, 50, 90)"}, "measures.p", "e.g. percentile"),
    (["metrics", 0, "measures"], {"p": "percentile(user_id, 50)"}, "measures.p", "is a string"),
    (["metrics", 0, "measures"], {}, "measures", "non-empty"),
    (["metrics", 0, "key"], ["app_id"], "key[0]", "always part of the key"),
    (["metrics", 0, "key"], ["geohash(attributes.lat, attributes.lon, 13)"], "key[0]", "precision"),
    (["metrics", 0, "key"], ["geohash(attributes.lat)"], "key[0]", "geohash(<lat>"),
    (["metrics", 0, "key"], ["attributes.sku", "attributes.sku"], "key[1]", "duplicate"),
    (["metrics", 0, "key"], ["country"], "key[0]", "unknown field"),
    (["metrics", 0, "filter", "event_types"], ["Purchase"], "filter.event_types", "invalid event type"),
    (["metrics", 0, "filter", "equals"], {"attributes.platform": ["ios"]}, "filter.equals.attributes.platform",
     "string, number or boolean"),
    (["metrics", 0, "filter", "equals"], {"event_time": "yesterday"}, "filter.equals.event_time", "number"),
    (["metrics", 0, "filter", "colour"], "red", "filter.colour", "unknown field"),
    (["metrics", 0, "windw"], {"tumbling": "1m"}, "windw", "unknown field"),
])
def test_bad_metric_raises_an_error_naming_the_metric_and_the_field(path, value, field, words):
    with pytest.raises(MetricConfigError) as info:
        parse_metrics(with_change(path, value))
    message = str(info.value)
    assert "'m1'" in message and f"field {field!r}" in message, message
    assert words in message, message
    assert info.value.metric == "m1" and info.value.field == field


def test_bad_metric_name_is_reported():
    with pytest.raises(MetricConfigError, match="field 'name'"):
        parse_metrics(with_change(["metrics", 0, "name"], "Bad Name"))


def test_duplicate_metric_names_are_rejected():
    doc = copy.deepcopy(GOOD)
    doc["metrics"].append(copy.deepcopy(doc["metrics"][0]))
    with pytest.raises(MetricConfigError, match="metric 'm1': field 'name': duplicate"):
        parse_metrics(doc)


@pytest.mark.parametrize("settings,field", [
    ({"allowed_lateness": "five minutes"}, "settings.allowed_lateness"),
    ({"max_lateness": "1m", "allowed_lateness": "5m"}, "settings.max_lateness"),
    ({"lateness": "5m"}, "settings.lateness"),
])
def test_bad_settings_name_the_field(settings, field):
    with pytest.raises(MetricConfigError, match=f"field '{field}'"):
        parse_metrics({**GOOD, "settings": settings})


def test_invalid_yaml_is_a_metric_config_error():
    with pytest.raises(MetricConfigError, match="not valid YAML"):
        parse_metrics_yaml("metrics: [\n  - name: x\n   bad")


def test_percentages_are_normalized_so_equal_quantiles_are_equal_measures():
    doc = with_change(["metrics", 0, "measures"], {"a": "percentile(attributes.price, 99.90)",
                                                  "b": "percentile(attributes.price , 050)",
                                                  "c": "percentile( attributes.price, 0 )"})
    assert [m.args for m in parse_metrics(doc)["m1"].measures] == [("99.9",), ("50",), ("0",)]


def test_settings_default_to_5m_and_7d():
    assert parse_metrics(GOOD).settings == LatenessSettings(300_000, 604_800_000)
