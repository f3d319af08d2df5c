"""No document is refused, or changes meaning, because of documents indexed before it.

Two apps (alpha, beta) share the daily indices. Whatever attribute names and
types one of them sent first, the other's events (and the same app's later
events) are indexed, searchable and returned exactly as sent, and the
mapping's size does not grow with the attribute names tenants send.
Run against osmem and, with OPENSEARCH_URL, a real OpenSearch node.
"""

from __future__ import annotations

import orjson
import pytest

from chalicelib.search import ensure_template, index_kinesis_batch, search_events
from chalicelib.search.naming import DAY_MS
from chalicelib.search.template import DATE_FORMAT
from chalicelib.stream import envelope
from tests.factories.search import HOUR_MS, NOW_MS, RejectingBulk, event, records, stored


def _index(backend, client, sink, events, now_ms=NOW_MS):
    """One Lambda invocation per call, so earlier calls are really indexed first."""
    return index_kinesis_batch(records(events), client=client, sink=sink, clock=lambda: now_ms,
                               config=backend.indexer_config())


def _search(backend, client, app_id, now_ms=NOW_MS, **params):
    result = search_events(client, app_id, params, now_ms, backend.search_settings)
    return [hit["event_id"] for hit in result["hits"]], result


def _mapping_fields(client, prefix) -> int:
    """How many fields the mappings of all daily indices define (leaf fields and subfields)."""
    def count(props):
        n = 0
        for spec in props.values():
            n += 1
            n += count(spec.get("properties", {})) + count(spec.get("fields", {}))
        return n
    mappings = client.indices.get_mapping(index=f"{prefix}-*")
    return max(count(m["mappings"].get("properties", {})) for m in mappings.values())


def test_numeric_then_string_attribute_of_another_app_is_indexed_and_searchable(backend, client, sink):
    """Rule: alpha's ``qty: 5`` does not make beta's later ``qty: "many"`` refused (item 1)."""
    alpha = event(app_id="alpha", qty=5)
    beta = event(app_id="beta", qty="many")
    first = _index(backend, client, sink, [alpha])
    second = _index(backend, client, sink, [beta])
    assert (first.indexed, second.indexed, second.bad_rows) == (1, 1, 0)
    assert sink.rows() == []
    assert _search(backend, client, "beta", q="many")[0] == [beta["event_id"]]
    assert _search(backend, client, "alpha", q="5")[0] == [alpha["event_id"]]
    by_id = {d["event_id"]: d["attributes"] for d in stored(client, backend.prefix)}
    assert by_id == {alpha["event_id"]: {"qty": 5}, beta["event_id"]: {"qty": "many"}}, "stored as sent"


@pytest.mark.parametrize("first_value, then_value", [({"x": 1}, "flat"), ("flat", {"x": 1})],
                         ids=["object-then-scalar", "scalar-then-object"])
def test_object_versus_scalar_both_ways(backend, client, sink, first_value, then_value):
    """Rule: an attribute sent as an object (or a scalar) never refuses a later scalar (or object) (item 1)."""
    alpha = event(app_id="alpha", cfg=first_value, text="from alpha")
    beta = event(app_id="beta", cfg=then_value, text="from beta")
    _index(backend, client, sink, [alpha])
    result = _index(backend, client, sink, [beta])
    assert (result.indexed, result.bad_rows) == (1, 0)
    assert sink.rows() == []
    ids, hits = _search(backend, client, "beta", q="beta")
    assert ids == [beta["event_id"]]
    assert hits["hits"][0]["attributes"] == {"cfg": then_value, "text": "from beta"}
    assert _search(backend, client, "alpha", q="alpha")[0] == [alpha["event_id"]]


def test_many_new_attribute_names_do_not_exhaust_the_mapping(backend, client, sink):
    """Rule: ~20 requests of 512 new attribute names from alpha leave room for beta's new name,
    and the mapping's size is the same after them as before (items 2 and 1)."""
    _index(backend, client, sink, [event(app_id="beta", text="warm up")])
    fields_before = _mapping_fields(client, backend.prefix)
    for request in range(20):
        attributes = {f"a{request:02d}_{n:03d}": n for n in range(512)}
        result = _index(backend, client, sink, [event(app_id="alpha", **attributes)])
        assert result.bad_rows == 0
    beta = event(app_id="beta", brand_new_name="shiny", another_new_one=7)
    result = _index(backend, client, sink, [beta])
    assert (result.indexed, result.bad_rows) == (1, 0)
    assert sink.rows() == []
    assert _search(backend, client, "beta", q="shiny")[0] == [beta["event_id"]]
    assert _mapping_fields(client, backend.prefix) == fields_before, "the mapping grew with attribute names"


def test_an_event_dated_tomorrow_does_not_set_tomorrows_mapping(backend, client, sink):
    """Rule: alpha's event at now+23h with ``price: {"poison": 1}`` creates tomorrow's index; beta's
    ``price: 9.99`` is indexed and searchable there tomorrow (item 3)."""
    poison = event(app_id="alpha", at=NOW_MS + 23 * HOUR_MS, price={"poison": 1})
    assert _index(backend, client, sink, [poison]).indexed == 1
    tomorrow = NOW_MS + DAY_MS
    beta = event(app_id="beta", at=tomorrow - HOUR_MS, price=9.99, item="hat")
    result = _index(backend, client, sink, [beta], now_ms=tomorrow)
    assert (result.indexed, result.bad_rows) == (1, 0)
    assert sink.rows() == []
    ids, hits = _search(backend, client, "beta", now_ms=tomorrow, q="9.99")
    assert ids == [beta["event_id"]]
    assert hits["hits"][0]["attributes"] == {"price": 9.99, "item": "hat"}


def test_an_apps_own_malformed_message_does_not_refuse_its_later_events(backend, client, sink):
    """Rule: a fuzzer's Segment message with ``segment.event`` as an object, indexed first, does not
    refuse the 40 later track events where it is a string (item 5)."""
    fuzz = event(app_id="alpha", event_type="track", segment={"event": {"$gt": ""}, "type": "track"})
    _index(backend, client, sink, [fuzz])
    tracks = [event(app_id="alpha", event_type="track", at=NOW_MS - HOUR_MS + n,
                    segment={"event": "Order Completed", "type": "track", "messageId": f"m-{n}"})
              for n in range(40)]
    result = _index(backend, client, sink, tracks)
    assert (result.indexed, result.bad_rows) == (40, 0)
    assert sink.rows() == []
    _, found = _search(backend, client, "alpha", q='"Order Completed"', size="100")
    assert found["total"] == 40
    assert all(hit["attributes"]["segment"]["event"] == "Order Completed" for hit in found["hits"])


def test_bad_rows_do_not_reveal_another_apps_attribute_names_or_types(backend, client, sink):
    """Rule: a tenant's bad rows never quote the cluster's mapping error (it names fields and types
    other apps created): they keep the error type only (item 4)."""
    alpha = event(app_id="alpha", alpha_secret_metric=5)
    beta = event(app_id="beta", alpha_secret_metric="guess")
    _index(backend, client, sink, [alpha])
    _index(backend, client, sink, [beta])  # today's mapping: refused, naming alpha's field and type
    # Whatever the cluster may still refuse, its message must not reach the tenant's bad rows.
    leaky = RejectingBulk(client, lambda doc: doc["app_id"] == "beta", {
        "type": "mapper_parsing_exception",
        "reason": "failed to parse field [attributes.alpha_private_field] of type [double] in document",
        "caused_by": {"type": "number_format_exception", "reason": "For input string: \"alpha_private_value\""}})
    index_kinesis_batch(records([event(app_id="beta", text="hello")]), client=leaky, sink=sink,
                        clock=lambda: NOW_MS, config=backend.indexer_config())
    rows = [row for row in sink.rows() if row["event"]["app_id"] == "beta"]
    assert rows, "the refused event must still be kept in bad rows"
    for row in rows:
        text = orjson.dumps({k: v for k, v in row.items() if k != "event"}).decode()
        for secret in ("alpha_secret_metric", "alpha_private_field", "alpha_private_value", "double"):
            assert secret not in text, f"bad row reveals {secret!r}: {row['detail']}"
        assert row["reason"] == "rejected_by_index"
        assert "mapper_parsing_exception" in row["detail"], "the error type stays, for the tenant to act on"


def test_attr_fields_answer_exact_and_numeric_range_queries_per_attribute(backend, client, sink):
    """Rule: without a field per attribute, one attribute can still be asked for directly: exact
    ``path=value`` on ``attr.pairs``, a numeric range on nested ``attr.numeric`` (what dashboards
    and operators query; the API's ``q`` reaches every value)."""
    cheap = event(app_id="alpha", value=3, character_class="mage")
    dear = event(app_id="alpha", value=40, character_class="rogue")
    text_value = event(app_id="beta", value="forty", character_class="mage")
    _index(backend, client, sink, [cheap, dear, text_value])
    client.indices.refresh(index=f"{backend.prefix}-*")

    def ids(query):
        hits = client.search(index=f"{backend.prefix}-*", body={"query": query, "size": 10})["hits"]["hits"]
        return sorted(hit["_source"]["event_id"] for hit in hits)

    assert ids({"term": {"attr.pairs": "character_class=mage"}}) == sorted([cheap["event_id"],
                                                                            text_value["event_id"]])
    assert ids({"nested": {"path": "attr.numeric", "query": {"bool": {"filter": [
        {"term": {"attr.numeric.path": "value"}}, {"range": {"attr.numeric.value": {"gt": 10}}}]}}}}) \
        == [dear["event_id"]]
    assert ids({"term": {"attr.pairs": "value=forty"}}) == [text_value["event_id"]]


def test_indices_made_by_the_previous_template_stay_searchable(backend, client, sink):
    """Rule: after the template changes, a daily index created under the old one (attributes as
    dynamic fields) still answers ``q`` until retention drops it."""
    old_index = f"{backend.prefix}-2026.11.24"
    client.indices.delete_index_template(name=backend.template.name)  # the index predates this template
    client.indices.create(index=old_index, body={"settings": {"number_of_replicas": 0}, "mappings": {
        "properties": {**envelope.opensearch_properties(DATE_FORMAT),
                       "attributes": {"type": "object", "dynamic": True}},
        "dynamic_templates": [{"attributes_strings": {  # the previous template's string attributes
            "path_match": "attributes.*", "match_mapping_type": "string",
            "mapping": {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}}}}]}})
    ensure_template(client, backend.template)
    old = event(app_id="alpha", at=NOW_MS - DAY_MS, text="legacy words")
    source = {**old, "attributes": orjson.loads(old["attributes"])}
    client.index(index=old_index, id=f"alpha:{old['event_id']}", body=source, refresh=True)
    new = event(app_id="alpha", text="legacy words too")
    _index(backend, client, sink, [new])
    ids, _ = _search(backend, client, "alpha", q="legacy", **{"from": "2026-11-24T00:00:00Z"})
    assert ids == [new["event_id"], old["event_id"]]


def test_deeply_nested_and_wide_attributes_are_indexed(backend, client, sink):
    """Rule: attributes 200 objects deep (beyond the mapping depth limit of 20) or with 5,000 values
    are indexed like any other event: the index refuses nothing for its attributes' shape (values
    past attribute_index.MAX_LEAVES, in document order, are stored but not searchable)."""
    deep: dict = {}
    node = deep
    for _ in range(200):
        node["d"] = {}
        node = node["d"]
    node["needle"] = "haystack"
    tall = event(app_id="alpha", nest=deep)
    wide = event(app_id="alpha", text="wide one", many=[{"k": n} for n in range(5000)])
    result = _index(backend, client, sink, [tall, wide])
    assert (result.indexed, result.bad_rows) == (2, 0)
    assert _search(backend, client, "alpha", q="haystack")[0] == [tall["event_id"]]
    assert _search(backend, client, "alpha", q="wide")[0] == [wide["event_id"]]
