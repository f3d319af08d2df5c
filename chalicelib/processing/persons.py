"""Persons: the latest traits per (app, user), first and last seen, ids merged by alias (pure).

The state of one raw id (:class:`IdState`) is a *join-semilattice*: merging two states is
commutative, associative and idempotent, so the persons table is the same whichever order the
hours are processed in, and processing an hour twice changes nothing:

* ``first_seen`` = min, ``last_seen`` = max of the event times of every event with that ``user_id``;
* per trait key, the newest ``set`` (by ``(event_time, event_id, value)``) and the oldest
  ``set_once``; a person's value of a key is its newest ``set`` if it has one, else its oldest
  ``set_once`` (``$set_once`` never overwrites: it only counts when nothing set the key);
* the id's alias: the *first* alias event (by ``(event_time, event_id)``) that merges it into
  another id (:func:`chalicelib.processing.traits.alias_of`); later ones for the same previous id
  are ignored (an id belongs to one person).

Canonical ids (:func:`persons`): aliases are applied oldest first; ``previous -> canonical``
makes every id of the previous id's person part of the canonical id's person, unless that would
make a cycle (the canonical id already merged into the previous one: that alias is ignored).
A person is listed under the root id its ids resolve to, with the others in ``aliases``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import orjson

from chalicelib.processing.traits import alias_of, trait_update

#: (event_time ms, event_id, value as canonical JSON text)
Stamp = tuple[int, str, str]


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


@dataclass
class IdState:
    first_seen: int | None = None
    last_seen: int | None = None
    set: dict[str, Stamp] = field(default_factory=dict)
    once: dict[str, Stamp] = field(default_factory=dict)
    alias: tuple[int, str, str] | None = None  # (event_time, event_id, canonical id)

    def merge(self, other: "IdState") -> "IdState":
        return IdState(_opt(min, self.first_seen, other.first_seen), _opt(max, self.last_seen, other.last_seen),
                       _keyed(max, self.set, other.set), _keyed(min, self.once, other.once),
                       _opt(min, self.alias, other.alias))

    def to_row(self) -> dict[str, Any]:
        return {"first_seen": self.first_seen, "last_seen": self.last_seen,
                "set_stamps": _json({k: list(v) for k, v in self.set.items()}),
                "once_stamps": _json({k: list(v) for k, v in self.once.items()}),
                "alias_to": self.alias[2] if self.alias else None,
                "alias_time": self.alias[0] if self.alias else None,
                "alias_event_id": self.alias[1] if self.alias else None}

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "IdState":
        alias = (row["alias_time"], row["alias_event_id"], row["alias_to"]) if row.get("alias_to") else None
        return cls(row.get("first_seen"), row.get("last_seen"),
                   {k: tuple(v) for k, v in orjson.loads(row["set_stamps"] or "{}").items()},
                   {k: tuple(v) for k, v in orjson.loads(row["once_stamps"] or "{}").items()}, alias)


def _opt(pick, a, b):
    if a is None:
        return b
    if b is None:
        return a
    return pick(a, b)


def _keyed(pick, a: dict, b: dict) -> dict:
    out = dict(a)
    for key, stamp in b.items():
        out[key] = pick(out[key], stamp) if key in out else stamp
    return out


def merge_all(*groups: Mapping[str, IdState]) -> dict[str, IdState]:
    """Several {user_id: state} merged id by id."""
    out: dict[str, IdState] = {}
    for group in groups:
        for user_id, state in group.items():
            out[user_id] = out[user_id].merge(state) if user_id in out else state
    return out


def states_of(events: Iterable[Mapping[str, Any]]) -> dict[str, IdState]:
    """The states the events contribute: each a mapping with ``user_id``, ``event_time`` (ms),
    ``event_id``, ``event_type`` and ``attributes`` (an object or its JSON text)."""
    out: dict[str, IdState] = {}

    def add(user_id: str, state: IdState) -> None:
        out[user_id] = out[user_id].merge(state) if user_id in out else state

    for event in events:
        user_id = event.get("user_id")
        if not user_id:
            continue
        attributes = event.get("attributes")
        if isinstance(attributes, (str, bytes)):
            try:
                attributes = orjson.loads(attributes)
            except orjson.JSONDecodeError:
                attributes = {}
        attributes = attributes if isinstance(attributes, dict) else {}
        t, eid = int(event["event_time"]), str(event["event_id"])
        update = trait_update(attributes)
        add(user_id, IdState(t, t, {k: (t, eid, _json(v)) for k, v in update.set.items()},
                             {k: (t, eid, _json(v)) for k, v in update.set_once.items()}))
        merged = alias_of(event.get("event_type") or "", user_id, attributes)
        if merged is not None:
            add(merged[0], IdState(alias=(t, eid, merged[1])))
    return out


def canonical_ids(states: Mapping[str, IdState]) -> dict[str, str]:
    """Every id -> the id of its person (see the module docstring)."""
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        while x in parent:
            x = parent[x]
        return x

    for previous, state in sorted(((u, s) for u, s in states.items() if s.alias), key=lambda i: (i[1].alias, i[0])):
        target = state.alias[2]
        if root(target) != previous:
            parent[previous] = target
    ids = set(states) | {s.alias[2] for s in states.values() if s.alias}
    return {u: root(u) for u in ids}


@dataclass(frozen=True)
class Person:
    user_id: str
    first_seen: int | None
    last_seen: int | None
    traits: dict[str, Any]
    aliases: list[str]


def persons(states: Mapping[str, IdState]) -> list[Person]:
    """The persons of an app's id states, sorted by user_id."""
    members: dict[str, list[str]] = {}
    for user_id, canonical in canonical_ids(states).items():
        members.setdefault(canonical, []).append(user_id)
    out = []
    for canonical, ids in sorted(members.items()):
        merged = IdState()
        for user_id in ids:
            if user_id in states:
                merged = merged.merge(states[user_id])
        traits = {k: orjson.loads(v[2]) for k, v in merged.once.items()}
        traits.update({k: orjson.loads(v[2]) for k, v in merged.set.items()})
        out.append(Person(canonical, merged.first_seen, merged.last_seen, dict(sorted(traits.items())),
                          sorted(u for u in ids if u != canonical)))
    return out
