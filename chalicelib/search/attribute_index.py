"""The searchable form of an event's attributes: fixed fields, whatever the attributes hold. Pure logic.

The daily indices store ``attributes`` unindexed (``enabled: false``): the
object is kept in ``_source`` exactly as sent and returned unchanged, and no
attribute ever becomes a field of the mapping. What is searchable is derived
here into the fixed ``attr`` object, whose fields have one type each:

* ``attr.text``    every string value (text, with a ``.keyword`` subfield);
* ``attr.numbers`` every number (double);
* ``attr.flags``   every boolean;
* ``attr.pairs``   ``"<path>=<value>"`` for every string, number and boolean
  (keyword), e.g. ``segment.event=Order Completed``, ``qty=5``, ``vip=true``;
* ``attr.numeric`` nested ``{path, value}`` for numbers, so a range on one
  attribute (``value > 10``) can be asked without mapping ``value``.

A path joins object keys with ``.``; array items take the path of their
array. Hence no document can be refused, or be indexed differently, because
of a document sent before it (another app's or its own), and the mapping has
the same fields on every day whatever names tenants send.

Bounds (a function of the document alone, so indexing stays deterministic):
the first ``MAX_LEAVES`` values in document order are indexed, the first
``MAX_NUMERIC`` numbers get a nested ``{path, value}``; the rest stays in
``_source`` (returned, not searchable).
"""

from __future__ import annotations

import math
from typing import Any

import orjson

#: Values indexed per document (attributes are at most 32 KiB, so this is rarely reached).
MAX_LEAVES = 1000
#: Nested ``{path, value}`` entries per document (each is a hidden Lucene document).
MAX_NUMERIC = 100
#: Longer strings (and pairs) are not keyword-indexed; their words still are, in ``attr.text``.
KEYWORD_IGNORE_ABOVE = 256


def mapping() -> dict[str, Any]:
    """The ``attr`` object of the index mapping (fixed: no dynamic fields)."""
    return {
        "dynamic": "strict",
        "properties": {
            "text": {"type": "text", "fields": {"keyword": {"type": "keyword",
                                                            "ignore_above": KEYWORD_IGNORE_ABOVE}}},
            "numbers": {"type": "double"},
            "flags": {"type": "boolean"},
            "pairs": {"type": "keyword", "ignore_above": KEYWORD_IGNORE_ABOVE},
            "numeric": {"type": "nested", "dynamic": "strict",
                        "properties": {"path": {"type": "keyword", "ignore_above": KEYWORD_IGNORE_ABOVE},
                                       "value": {"type": "double"}}},
        },
    }


def _leaves(attributes: dict[str, Any]):
    """``(path, value)`` of every scalar in document order (iterative: any depth)."""
    stack: list[tuple[str, Any]] = [(key, value) for key, value in reversed(list(attributes.items()))]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            stack.extend((f"{path}.{key}", item) for key, item in reversed(list(value.items())))
        elif isinstance(value, list):
            stack.extend((path, item) for item in reversed(value))
        else:
            yield path, value


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int beyond a double (not from JSON: orjson stops at 64 bits)
        return None
    return number if math.isfinite(number) else None


def attribute_index(attributes: dict[str, Any]) -> dict[str, list[Any]]:
    """The ``attr`` object of a document (empty lists are left out)."""
    text: list[str] = []
    numbers: list[float] = []
    flags: list[bool] = []
    pairs: list[str] = []
    numeric: list[dict[str, Any]] = []
    for count, (path, value) in enumerate(_leaves(attributes)):
        if count >= MAX_LEAVES:
            break
        if isinstance(value, str):
            text.append(value)
            pairs.append(f"{path}={value}")
        elif isinstance(value, bool):
            flags.append(value)
            pairs.append(f"{path}={'true' if value else 'false'}")
        elif (number := _number(value)) is not None:
            numbers.append(number)
            pairs.append(f"{path}={orjson.dumps(value).decode()}")
            if len(numeric) < MAX_NUMERIC:
                numeric.append({"path": path, "value": number})
    fields = {"text": text, "numbers": numbers, "flags": flags, "pairs": pairs, "numeric": numeric}
    return {name: values for name, values in fields.items() if values}
