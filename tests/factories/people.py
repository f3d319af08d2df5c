"""Events with a known session and person structure, and the truth computed with pandas.

The truth here is written independently of the project's code (no import of chalicelib.processing):
pandas dedupes by arrival, sessionizes by the gap and resolves aliases and traits by the documented rules.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import orjson
import pandas as pd

from chalicelib.ingest.validation import ms_to_iso, validate_event
from tests.factories.lake import T0, lambda_batches

MINUTE = 60_000
HOUR = 3_600_000
GAP = 30 * MINUTE
APPS = ("demo", "rival-game")
TYPES = ("app_open", "level_start", "level_up", "purchase", "chat_message")


@dataclass
class Generated:
    #: every copy delivered first (duplicates included), as dicts with app_id and received_at
    first: list[dict] = field(default_factory=list)
    #: copies delivered later (the late event that bridges two sessions, a late duplicate)
    late: list[dict] = field(default_factory=list)

    def lines(self, copies: list[dict]) -> list[bytes]:
        out = []
        for c in copies:
            raw = {"event_id": c["event_id"], "event_type": c["event_type"], "event_time": ms_to_iso(c["event_time"]),
                   "user_id": c["user_id"], "attributes": c["attributes"]}
            out.append(validate_event(raw, c["app_id"], received_at=c["received_at"]).line)
        return out


def generate(seed: int = 7) -> Generated:
    rng = random.Random(seed)
    data = Generated()
    n = 0

    def add(app, user, at, kind=None, attributes=None, received=None, late=False):
        nonlocal n
        n += 1
        copy = {"app_id": app, "event_id": f"e{n:05d}", "user_id": user, "event_time": at,
                "event_type": kind or rng.choice(TYPES), "attributes": attributes or {"n": n},
                "received_at": received if received is not None else at + rng.randint(1_000, 60_000)}
        (data.late if late else data.first).append(copy)
        return copy

    for app in APPS:
        # u0..u3 exist in both apps with different activity; the others in one app only.
        users = [f"u{i}" for i in range(4)] + [f"{app}-u{i}" for i in range(8)]
        for user in users:
            at = T0 + rng.randint(0, 50) * MINUTE
            for _ in range(rng.randint(1, 4)):  # sessions
                for _ in range(rng.randint(1, 6)):  # events, at most 25 minutes apart
                    add(app, user, at)
                    at += rng.randint(1, 25) * MINUTE + rng.randint(0, 59_000)
                at += rng.randint(36, 80) * MINUTE  # more than the gap: a new session
    # A session across an hour boundary, and two sessions a late event joins into one:
    add("demo", "crosser", T0 + 50 * MINUTE, "app_open")
    add("demo", "crosser", T0 + 70 * MINUTE, "level_up")
    for minute in (150, 170, 185):
        add("demo", "bridge", T0 + minute * MINUTE, "app_open" if minute == 150 else "level_up")
    for minute in (225, 240):  # 40 minutes after 185: a second session until the late event comes
        add("demo", "bridge", T0 + minute * MINUTE, "purchase")
    add("demo", "bridge", T0 + 205 * MINUTE, "chat_message", received=T0 + 300 * MINUTE, late=True)
    # Persons: traits of every protocol's shape, aliases.
    add("demo", "anon-1", T0 + 5 * MINUTE, "page", {"segment": {"type": "page"}})
    add("demo", "anon-1", T0 + 8 * MINUTE, "identify",
        {"traits": {"plan": "free", "email": "a@x.io"}, "segment": {"type": "identify"}})
    add("demo", "ann", T0 + 20 * MINUTE, "alias", {"segment": {"type": "alias", "previousId": "anon-1"}})
    add("demo", "ann", T0 + 25 * MINUTE, "identify",
        {"traits": {"plan": "pro", "first_plan": "pro"}, "posthog": {"set_once_keys": ["first_plan"]}})
    add("demo", "ann", T0 + 130 * MINUTE, "identify",  # a set_once of a key that was set before: kept
        {"traits": {"email": "b@x.io", "first_plan": "free"}, "posthog": {"set_once_keys": ["first_plan"]}})
    add("demo", "ann", T0 + 135 * MINUTE, "track", {"context": {"traits": {"country": "fr"}}})
    add("demo", "ph-2", T0 + 30 * MINUTE, "create_alias", {"alias": "ph-anon"})
    add("demo", "ph-anon", T0 + 10 * MINUTE, "pageview", {"$set_once": {"referrer": "google"}, "$set": {"tier": 1}})
    add("demo", "ph-2", T0 + 95 * MINUTE, "identify", {"$set": {"tier": 2}, "$set_once": {"referrer": "bing"}})
    add("rival-game", "ann", T0 + 40 * MINUTE, "identify", {"traits": {"plan": "gold"}})  # another app's ann
    # Duplicates: client retries (same event_id) arriving later, one with its time shifted by an hour.
    originals = list(data.first)
    for copy in rng.sample(originals, len(originals) // 8):
        data.first.append({**copy, "received_at": copy["received_at"] + rng.randint(1, 30) * MINUTE})
    shifted = originals[3]
    data.first.append({**shifted, "event_time": shifted["event_time"] + HOUR, "received_at": shifted["received_at"] + 5 * MINUTE})
    data.late.append({**originals[10], "received_at": originals[10]["received_at"] + 2 * HOUR})
    return data


def own_settings(endpoint_url: str, name: str):
    """Settings with resource names of their own: moto keeps one backend per process (every moto server
    of a test session shares it), so another suite's stream, tables, bucket or Glue database are never met."""
    from chalicelib.runtime.settings import Settings

    return Settings(aws_endpoint_url=endpoint_url, stream_name=f"{name}-events", apps_table=f"{name}-apps",
                    state_table=f"{name}-state", bucket=f"{name}-lake", glue_database=name.replace("-", "_"))


#: The event of the finalize_windows schedule, as EventBridge sends it.
SCHEDULED = {"version": "0", "account": "123456789012", "region": "us-east-1", "detail": {},
             "detail-type": "Scheduled Event", "source": "aws.events", "time": "2026-12-07T00:00:00Z",
             "id": "schedule", "resources": []}


def deliver(container, lines: list[bytes], first_sequence: int) -> dict:
    """The lines through the real archive and aggregation consumers, the commit_events schedule, then
    app.py's finalize_windows handler (finalization; its worker hook writes the persons and sessions)."""
    import app as app_module

    for batch in lambda_batches(lines, seed=3, first_sequence=first_sequence):
        assert container.archive.handle(batch) == {"batchItemFailures": []}
        assert container.aggregation.handle(batch) == {"batchItemFailures": []}
    container.raw_table_job.run()
    return app_module.finalize_windows(SCHEDULED, None)


# ------------------------------------------------------------------ the truth, with pandas
def deduped(copies: list[dict]) -> pd.DataFrame:
    """First received copy of each (app, event_id) (all copies here arrive within 24 h)."""
    frame = pd.DataFrame(copies)
    frame = frame.sort_values(["received_at"], kind="stable").drop_duplicates(["app_id", "event_id"], keep="first")
    return frame.reset_index(drop=True)


def sessions_truth(copies: list[dict], gap: int = GAP) -> pd.DataFrame:
    """app_id, user_id, start, end, events, entry, exit of every session."""
    f = deduped(copies).sort_values(["app_id", "user_id", "event_time", "event_id"]).reset_index(drop=True)
    new = (f["app_id"] != f["app_id"].shift()) | (f["user_id"] != f["user_id"].shift()) \
        | (f["event_time"] - f["event_time"].shift() > gap)
    f["session"] = new.cumsum()
    g = f.groupby("session")
    return pd.DataFrame({"app_id": g["app_id"].first(), "user_id": g["user_id"].first(),
                         "start": g["event_time"].min(), "end": g["event_time"].max(), "events": g.size(),
                         "entry": g["event_type"].first(), "exit": g["event_type"].last()}).reset_index(drop=True)


def session_metrics_truth(sessions: pd.DataFrame, app: str, start: int, end: int) -> dict:
    s = sessions[(sessions["app_id"] == app) & (sessions["start"] >= start) & (sessions["start"] < end)]
    durations = (s["end"] - s["start"])
    return {"sessions": len(s), "users": s["user_id"].nunique(), "events": int(s["events"].sum()),
            "bounces": int((s["events"] == 1).sum()),
            "bounce_rate": float((s["events"] == 1).sum() / len(s)) if len(s) else None,
            "median_duration_s": float(durations.median()) / 1000 if len(s) else None}


def _alias_edges(frame: pd.DataFrame) -> dict[tuple[str, str], str]:
    """(app, previous id) -> canonical id, from the test's alias events (no conflicts in this data)."""
    edges = {}
    for row in frame.itertuples():
        a = row.attributes
        if row.event_type == "alias":
            edges[(row.app_id, a["segment"]["previousId"])] = row.user_id
        elif row.event_type == "create_alias":
            edges[(row.app_id, a["alias"])] = row.user_id
    return edges


def persons_truth(copies: list[dict]) -> dict[tuple[str, str], dict]:
    """(app, canonical user_id) -> {first_seen, last_seen, traits, aliases}."""
    f = deduped(copies)
    edges = _alias_edges(f)

    def canonical(app, user):
        while (app, user) in edges:
            user = edges[(app, user)]
        return user

    f["person"] = [canonical(a, u) for a, u in zip(f["app_id"], f["user_id"])]
    updates = []
    for row in f.itertuples():
        a = row.attributes
        once_keys = set(a.get("posthog", {}).get("set_once_keys", []))
        sets = {**a.get("context", {}).get("traits", {}),
                **{k: v for k, v in a.get("traits", {}).items() if k not in once_keys}, **a.get("$set", {})}
        onces = {**{k: v for k, v in a.get("traits", {}).items() if k in once_keys}, **a.get("$set_once", {})}
        for kind, values in (("set", sets), ("once", onces)):
            for key, value in values.items():
                updates.append({"app_id": row.app_id, "person": row.person, "key": key, "value": value,
                                "kind": kind, "t": row.event_time, "id": row.event_id})
    u = pd.DataFrame(updates).sort_values(["t", "id"])
    last_set = u[u["kind"] == "set"].groupby(["app_id", "person", "key"])["value"].last()
    first_once = u[u["kind"] == "once"].groupby(["app_id", "person", "key"])["value"].first()
    traits = pd.concat([first_once[~first_once.index.isin(last_set.index)], last_set])
    out = {}
    for (app, person), g in f.groupby(["app_id", "person"]):
        mine = traits[(traits.index.get_level_values(0) == app) & (traits.index.get_level_values(1) == person)]
        out[(app, person)] = {"first_seen": int(g["event_time"].min()), "last_seen": int(g["event_time"].max()),
                              "traits": {k: v for (_, _, k), v in sorted(mine.items())},
                              "aliases": sorted(set(g["user_id"]) - {person})}
    return out


def as_json(value) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
