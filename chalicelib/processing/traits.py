"""The user's traits and id merges of a stored event, read one way for every protocol (pure).

Every protocol's identify reaches the lake as a plain event (``chalicelib/ingest``); this module is
the one place that reads a stored event's ``attributes`` as a *trait update* and an *alias*.

Trait update (:func:`trait_update`): two objects, ``set`` (overwrites) and ``set_once`` (sets a key
only if the person has no value for it yet; never overwrites):

* ``set``: ``attributes.context.traits`` (a native event sending Segment's context), then
  ``attributes.traits`` (Segment identify traits and ``context.traits``, RudderStack's
  ``context.traits``, PostHog's ``$set``: where the ingest routes store them), then
  ``attributes["$set"]`` (a native event sending PostHog's shape); a later source wins a key;
* ``set_once``: ``attributes["$set_once"]``, and the keys of ``attributes.traits`` that the PostHog
  route marked as coming from ``$set_once`` only (``attributes.posthog.set_once_keys``).

Alias (:func:`alias_of`): *the previous id is merged under the canonical id*:

* Segment/RudderStack ``alias`` (``event_type == "alias"``): ``previousId``
  (``attributes.segment.previousId``, or ``attributes.previous_id`` on a native event) -> ``user_id``;
* PostHog ``$create_alias`` (``create_alias``): ``properties.alias`` (``attributes.alias``) -> the
  event's ``distinct_id`` (``user_id``);
* PostHog ``$identify`` carrying ``$anon_distinct_id``: the anonymous id -> ``user_id``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

#: Where the PostHog route records which keys of ``attributes.traits`` came from ``$set_once`` only.
SET_ONCE_KEYS = "set_once_keys"
POSTHOG_META = "posthog"
SEGMENT_META = "segment"


@dataclass(frozen=True)
class TraitUpdate:
    set: dict[str, Any] = field(default_factory=dict)
    set_once: dict[str, Any] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.set or self.set_once)


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def trait_update(attributes: Mapping[str, Any] | None) -> TraitUpdate:
    """The trait update an event's attributes carry (empty when none; see the module docstring)."""
    attributes = attributes or {}
    traits = _object(attributes.get("traits"))
    marked = _object(attributes.get(POSTHOG_META)).get(SET_ONCE_KEYS)
    once_keys = {k for k in marked if isinstance(k, str)} if isinstance(marked, list) else set()
    updates = {**_object(_object(attributes.get("context")).get("traits")),
               **{k: v for k, v in traits.items() if k not in once_keys},
               **_object(attributes.get("$set"))}
    once = {**{k: v for k, v in traits.items() if k in once_keys}, **_object(attributes.get("$set_once"))}
    return TraitUpdate(updates, once)


def _id(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        value = str(value)
    return value if isinstance(value, str) and value else None


def alias_of(event_type: str, user_id: str | None, attributes: Mapping[str, Any] | None) -> tuple[str, str] | None:
    """``(previous_id, canonical_id)`` when the event merges an id into ``user_id``, else None."""
    attributes = attributes or {}
    if not user_id:
        return None
    if event_type == "alias":
        previous = _id(_object(attributes.get(SEGMENT_META)).get("previousId")) or _id(attributes.get("previous_id"))
    elif event_type == "create_alias":
        previous = _id(attributes.get("alias"))
    elif event_type == "identify":
        previous = _id(attributes.get("$anon_distinct_id"))
    else:
        return None
    if previous is None or previous == user_id:
        return None
    return previous, user_id
