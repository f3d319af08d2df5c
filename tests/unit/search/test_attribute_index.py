"""The searchable form of attributes (``attr``) and what bad rows may say about a refusal."""

from __future__ import annotations

from chalicelib.search import attribute_index as ai
from chalicelib.search.bulk import public_reason
from chalicelib.search.documents import event_to_document
from chalicelib.search.template import build_index_template, TemplateSettings
from tests.factories.search import event


def test_values_go_to_one_field_per_type_with_their_paths():
    """Rule: each value lands in the field of its JSON type, whatever type its name had elsewhere."""
    attr = ai.attribute_index({"qty": 5, "cfg": {"x": 1.5, "on": True}, "tags": ["a", "b"], "none": None,
                               "segment": {"event": "Order Completed"}})
    assert attr == {
        "text": ["a", "b", "Order Completed"],
        "numbers": [5.0, 1.5],
        "flags": [True],
        "pairs": ["qty=5", "cfg.x=1.5", "cfg.on=true", "tags=a", "tags=b", "segment.event=Order Completed"],
        "numeric": [{"path": "qty", "value": 5.0}, {"path": "cfg.x", "value": 1.5}],
    }


def test_empty_attributes_give_no_attr_field():
    assert ai.attribute_index({}) == {}
    assert "attr" not in event_to_document(event())


def test_depth_and_size_are_bounded_by_the_document_alone():
    """Rule: any depth is walked without recursion; at most MAX_LEAVES values and MAX_NUMERIC nested
    entries are indexed, in document order (deterministic)."""
    deep: dict = {}
    node = deep
    for _ in range(5000):
        node["d"] = {}
        node = node["d"]
    node["x"] = "bottom"
    assert ai.attribute_index(deep)["pairs"] == ["d." * 5000 + "x=bottom"]
    wide = {f"k{n}": n for n in range(3 * ai.MAX_LEAVES)}
    attr = ai.attribute_index(wide)
    assert len(attr["numbers"]) == ai.MAX_LEAVES and attr["numbers"][:2] == [0.0, 1.0]
    assert len(attr["numeric"]) == ai.MAX_NUMERIC
    assert attr == ai.attribute_index(dict(wide))


def test_template_mapping_is_fixed_and_strict():
    """Rule: the mapping has no dynamic part: attributes are stored unindexed, attr is strict."""
    mappings = build_index_template(TemplateSettings())["template"]["mappings"]
    assert mappings["dynamic"] == "strict" and "dynamic_templates" not in mappings
    assert mappings["properties"]["attributes"] == {"type": "object", "enabled": False}
    assert mappings["properties"]["attr"]["dynamic"] == "strict"


def test_public_reason_keeps_error_types_and_drops_messages():
    """Rule: a bad row never quotes the cluster's message (field names, types, values)."""
    error = {"type": "mapper_parsing_exception", "reason": "failed to parse field [attributes.secret] of type [long]",
             "caused_by": {"type": "illegal_argument_exception", "reason": "For input string: \"x\"",
                           "caused_by": {"type": "Weird Type [attributes.secret]", "reason": "..."}}}
    assert public_reason(error) == ("mapper_parsing_exception caused by illegal_argument_exception "
                                    "caused by unknown")
    assert public_reason("a plain string [attributes.secret]") == "unknown"
    assert public_reason(None) == "unknown"
