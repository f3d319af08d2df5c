"""The event-name normalization: any SDK name -> a valid, stable event_type."""

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.ingest.names import MAX_CHARS, event_type_for
from chalicelib.stream.envelope import EVENT_TYPE_PATTERN

VALID = re.compile(EVENT_TYPE_PATTERN)
names = st.text(max_size=200) | st.text(alphabet="AbZ $-_.09é가", max_size=90)


@settings(max_examples=500)
@given(names)
def test_every_name_maps_to_a_valid_event_type(name):
    assert VALID.fullmatch(event_type_for(name))


@settings(max_examples=300)
@given(names)
def test_the_mapping_is_deterministic_and_a_valid_type_maps_to_itself(name):
    first = event_type_for(name)
    assert event_type_for(name) == first
    assert event_type_for(first) == first


@given(st.from_regex(VALID, fullmatch=True))
def test_names_that_already_are_valid_types_are_kept(name):
    assert event_type_for(name) == name


@given(st.from_regex(r"[A-Za-z][A-Za-z0-9]{0,20}( [A-Za-z0-9]{1,20}){0,2}", fullmatch=True))
def test_case_and_spaces_become_lower_snake_case(name):
    assert event_type_for(name) == "_".join(name.lower().split())


def test_segment_and_posthog_names_read_as_expected():
    assert event_type_for("Order Completed") == "order_completed"
    assert event_type_for("$pageview") == "pageview"
    assert event_type_for("$create_alias") == "create_alias"
    assert event_type_for("Product Viewed (v2)") == "product_viewed_v2"
    assert event_type_for("Café Opened") == "cafe_opened"


def test_a_name_starting_with_a_digit_is_prefixed():
    assert event_type_for("3D View") == "e_3d_view"


@given(st.text(alphabet="abcdefghij", min_size=MAX_CHARS + 1, max_size=120),
       st.text(alphabet="klmnop", min_size=1, max_size=5))
def test_over_long_names_are_cut_with_a_hash_so_names_sharing_a_prefix_stay_apart(prefix, tail):
    long_a, long_b = prefix + tail, prefix + tail + "x"
    assert len(event_type_for(long_a)) == MAX_CHARS
    assert event_type_for(long_a) != event_type_for(long_b)
    assert event_type_for(long_a)[:40] == long_a[:40]


def test_names_with_no_ascii_spelling_stay_distinct():
    assert event_type_for("구매 완료") != event_type_for("결제 완료")
    assert event_type_for("구매 완료").startswith("event_")
    assert event_type_for("Pay 결제").startswith("pay_") and event_type_for("Pay 결제") != "pay"
