"""The rules of persons and sessions (chalicelib/processing: traits.py, persons.py, sessions.py)."""

from __future__ import annotations

import random

import pyarrow as pa

from chalicelib.ingest import posthog
from chalicelib.ingest.sdk_protocol import SdkBatch
from chalicelib.processing import traits
from chalicelib.processing.persons import canonical_ids, persons, states_of
from chalicelib.processing.sessions import chain, events_as_fragments, metrics


def test_one_trait_normalization_for_every_shape():
    """Rule: set = context.traits < traits < $set (a later source wins a key); set_once = $set_once and
    the traits the PostHog route marked as set_once only."""
    update = traits.trait_update({"context": {"traits": {"a": 1, "b": 1}}, "traits": {"b": 2, "c": 2, "o": 0},
                                  "$set": {"c": 3}, "$set_once": {"p": 4},
                                  "posthog": {"set_once_keys": ["o"]}})
    assert update.set == {"a": 1, "b": 2, "c": 3}
    assert update.set_once == {"o": 0, "p": 4}
    assert not traits.trait_update({"n": 1})


def test_posthog_route_marks_the_keys_only_set_once_gave():
    """Rule: $set_once keys that $set does not also give are listed in attributes.posthog.set_once_keys,
    the name the persons code reads."""
    raw = posthog.PostHogProtocol().to_raw_event(
        {"event": "$identify", "distinct_id": "d", "uuid": "u1", "$set_once": {"first": 1, "both": 1},
         "properties": {"$set": {"both": 2, "plan": "pro"}}}, SdkBatch([], None, {}), 0)
    attributes = raw["attributes"]
    assert attributes["traits"] == {"first": 1, "both": 2, "plan": "pro"}
    assert attributes[posthog.META_KEY][posthog.SET_ONCE_KEYS] == ["first"]
    assert posthog.SET_ONCE_KEYS == traits.SET_ONCE_KEYS
    update = traits.trait_update(attributes)
    assert update.set == {"both": 2, "plan": "pro"} and update.set_once == {"first": 1}


def ev(user, t, eid, kind="track", **attributes):
    return {"user_id": user, "event_time": t, "event_id": eid, "event_type": kind, "attributes": attributes}


def test_set_once_never_overwrites_and_set_always_does_in_any_order():
    """Rule: a key's value is its newest set, else its oldest set_once; the order events are merged in
    does not matter."""
    events = [ev("u", 10, "a", **{"$set_once": {"k": "first"}}), ev("u", 20, "b", **{"$set_once": {"k": "second"}}),
              ev("u", 30, "c", **{"$set": {"s": 1}}), ev("u", 40, "d", **{"$set_once": {"s": 9}}),
              ev("u", 5, "e", **{"$set": {"s": 0}})]
    for seed in range(5):
        shuffled = events[:]
        random.Random(seed).shuffle(shuffled)
        (person,) = persons(states_of(shuffled))
        assert person.traits == {"k": "first", "s": 1}
        assert (person.first_seen, person.last_seen) == (5, 40)


def test_alias_rules_first_alias_wins_chains_follow_cycles_are_ignored():
    """Rule: previous -> canonical; an id's first alias (by time, id) wins; a chain resolves to its end;
    an alias that would make a cycle is ignored."""
    states = states_of([
        ev("b", 10, "1", "alias", segment={"previousId": "a"}),
        ev("c", 20, "2", "alias", segment={"previousId": "a"}),  # later alias of a: ignored
        ev("c", 30, "3", "create_alias", alias="b"),  # b -> c: a follows
        ev("b", 40, "4", "identify", **{"$anon_distinct_id": "c"}),  # c -> b would be a cycle: ignored
    ])
    ids = canonical_ids(states)
    assert ids == {"a": "c", "b": "c", "c": "c"}
    (person,) = persons(states)
    assert person.user_id == "c" and person.aliases == ["a", "b"]


def one_pass_sessions(events, gap):
    """The rule written plainly: per user, in (time, id) order, a new session after more than gap."""
    out = []
    for e in sorted(events, key=lambda e: (e[0], e[1], e[2])):
        if out and out[-1][0] == e[0] and e[1] - out[-1][2] <= gap:
            user, start, _, n, entry, _ = out[-1]
            out[-1] = (user, start, e[1], n + 1, entry, e[3])
        else:
            out.append((e[0], e[1], e[1], 1, e[3], e[3]))
    return out


def test_sessions_from_hour_fragments_equal_one_pass_over_the_events():
    """Rule: chaining each hour's events into fragments, then the fragments of every hour, gives the
    sessions of one pass over all the events (gap boundaries included: exactly gap apart is one session)."""
    rng = random.Random(3)
    gap = 30 * 60_000
    events = [(f"u{rng.randrange(5)}", rng.randrange(0, 6 * 3_600_000, 60_000), f"e{i:04d}", rng.choice("abc"))
              for i in range(600)]
    events += [("x", 0, "x1", "a"), ("x", gap, "x2", "b"), ("x", 2 * gap + 1, "x3", "c")]
    fragments = []
    for hour in range(6):
        mine = [e for e in events if e[1] // 3_600_000 == hour]
        table = events_as_fragments(pa.array([e[0] for e in mine], pa.string()), pa.array([e[1] for e in mine], pa.int64()),
                                    pa.array([e[2] for e in mine], pa.string()), pa.array([e[3] for e in mine], pa.string()))
        fragments.append(chain(table, gap))
    joined = chain(pa.concat_tables(fragments), gap)
    got = sorted(zip(*(joined[n].to_pylist() for n in ("user_id", "start_ms", "end_ms", "events",
                                                         "entry_event_type", "exit_event_type"))))
    assert got == sorted(one_pass_sessions(events, gap))
    assert [s for s in got if s[0] == "x"] == [("x", 0, gap, 2, "a", "b"), ("x", 2 * gap + 1, 2 * gap + 1, 1, "c", "c")]


def test_session_metrics():
    """Rule: bounce rate = one-event sessions / sessions; median of durations (mean of the middle two)."""
    m = metrics(["a", "a", "b", "c"], [0, 1000, 3000, 10_000], [1, 2, 1, 5])
    assert (m.sessions, m.users, m.events, m.bounces, m.bounce_rate, m.median_duration_s) == (4, 3, 9, 2, 0.5, 2.0)
    assert metrics([], [], []).median_duration_s is None
