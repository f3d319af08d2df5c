"""Raw events with a known funnel and retention structure, and the truth computed with pandas.

Two apps (``shop`` and ``other``) share user ids; ``other`` has its own, different journeys (they
must never count for ``shop``). ``shop``'s users walk view -> cart -> checkout -> buy with random
gaps (some within the hour, some beyond; some events at the same millisecond as the previous step),
over three weeks around ``[FROM, TO)``; step-1 events before ``FROM`` and after ``TO`` too. The data
also has:

* duplicates: copies of an event (same ``event_id``) received minutes later, some with a shifted
  ``event_time`` (a re-sent batch): only the first received copy counts, so a shifted copy must not
  complete a funnel or make a return;
* late events: received days after their event time;
* a `where` attribute (``plan``) on cart events and a breakdown attribute (``source``) on views.

The truth (:func:`funnel_truth`, :func:`retention_truth`) is computed here from the rows with pandas,
by the definitions of the issue, not with the project's code.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa

T0 = datetime(2026, 3, 2, tzinfo=timezone.utc)  # a Monday
FROM, TO = T0, T0 + timedelta(days=14)
STEPS = ["view", "cart", "checkout", "buy"]
APPS = ("shop", "other")


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def generate(seed: int = 23, users: int = 160) -> pd.DataFrame:
    """The raw rows (every copy): app_id, event_id, user_id, event_type, event_time, received_at, attributes."""
    rng = random.Random(seed)
    rows = []

    def add(app, user, kind, when_ms, attributes=None, received_ms=None, event_id=None):
        event_id = event_id or f"{app}-{len(rows):06d}"
        rows.append({"app_id": app, "event_id": event_id, "user_id": user, "event_type": kind,
                     "event_time": when_ms, "received_at": received_ms if received_ms is not None else when_ms + 1500,
                     "attributes": orjson.dumps(attributes or {}).decode()})
        return rows[-1]

    start, span = _ms(T0 - timedelta(days=3)), 20 * 86_400_000
    for u in range(users):
        user = f"u{u:03d}"
        for _ in range(rng.randint(1, 4)):  # journeys
            t = start + rng.randrange(span)
            add("shop", user, "view", t, {"source": rng.choice(["ads", "mail", "seo"])})
            for kind in STEPS[1:]:
                if rng.random() < 0.3:
                    break
                t += rng.choice([0, 0, rng.randrange(60_000), rng.randrange(40 * 60_000), rng.randrange(3 * 3_600_000)])
                add("shop", user, kind, t, {"plan": rng.choice(["pro", "free"])} if kind == "cart" else {})
            if rng.random() < 0.2:
                add("shop", user, "ping", t + rng.randrange(3_600_000))
        if rng.random() < 0.5:  # the same user id in another app, with a complete fast funnel
            t = start + rng.randrange(span)
            for i, kind in enumerate(STEPS):
                add("other", user, kind, t + i * 1000, {"source": "ads", "plan": "pro"})
    shop = [r for r in rows if r["app_id"] == "shop"]
    for r in rng.sample(shop, 60):  # late: received days after the event
        r["received_at"] = r["event_time"] + rng.randrange(2, 6) * 86_400_000
    inside = [r for r in shop if _ms(FROM + timedelta(days=1)) <= r["event_time"] < _ms(TO - timedelta(days=3))]
    for r in rng.sample(inside, 40):  # client retries: an identical copy received minutes later
        add(r["app_id"], r["user_id"], r["event_type"], r["event_time"], orjson.loads(r["attributes"]),
            r["received_at"] + rng.randrange(60_000, 600_000), r["event_id"])
    for r in rng.sample(inside, 40):  # a re-sent batch: the copy's event time shifted by 10-50 minutes
        add(r["app_id"], r["user_id"], r["event_type"], r["event_time"] + rng.randrange(600_000, 3_000_000),
            orjson.loads(r["attributes"]), r["received_at"] + rng.randrange(60_000, 3_600_000), r["event_id"])
    for r in rng.sample(inside, 10):  # shifted across a day (retention) and received an hour later
        add(r["app_id"], r["user_id"], r["event_type"], r["event_time"] + 86_400_000 + rng.randrange(3_600_000),
            orjson.loads(r["attributes"]), r["received_at"] + 3_600_000, r["event_id"])
    for i in range(8):  # copies that would convert (funnel) or return (retention) if they counted
        t = _ms(FROM + timedelta(days=2 + i, hours=i))
        add("shop", f"t{i:03d}", "view", t, {"source": "ads"})
        cart = add("shop", f"t{i:03d}", "cart", t + 300_000, {"plan": "pro"})
        late_checkout = add("shop", f"t{i:03d}", "checkout", t + 3 * 3_600_000)
        add("shop", f"t{i:03d}", "checkout", t + 1_800_000, received_ms=late_checkout["received_at"] + 60_000,
            event_id=late_checkout["event_id"])
        add("shop", f"t{i:03d}", "cart", t + 86_400_000 + 300_000, {"plan": "pro"},
            received_ms=cart["received_at"] + 3_600_000, event_id=cart["event_id"])
    frame = pd.DataFrame(rows)
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def to_arrow(frame: pd.DataFrame) -> pa.Table:
    """The rows as the raw table's writers hand them over (instants as timestamp[ms, UTC])."""
    ts = pa.timestamp("ms", tz="UTC")
    return pa.table({"event_id": frame["event_id"].tolist(), "app_id": frame["app_id"].tolist(),
                     "event_type": frame["event_type"].tolist(), "user_id": frame["user_id"].tolist(),
                     "event_time": pa.array(frame["event_time"].tolist(), pa.int64()).cast(ts),
                     "received_at": pa.array(frame["received_at"].tolist(), pa.int64()).cast(ts),
                     "client_event_time": pa.nulls(len(frame), ts),
                     "attributes": frame["attributes"].tolist()})


def deduped(frame: pd.DataFrame, app_id: str) -> pd.DataFrame:
    """The app's events, each event_id once: its first received copy (all copies here are within 24 h)."""
    rows = frame[frame["app_id"] == app_id].sort_values(["received_at", "event_time"], kind="stable")
    return rows.drop_duplicates(["event_id"], keep="first")


def _attr(text: str, name: str):
    value = orjson.loads(text).get(name)
    return None if value is None else str(value)


def funnel_truth(frame, app_id, steps, within_ms, start_ms, end_ms, wheres=None, breakdown=None):
    """{breakdown value or "*": [(users, median_ms or None) per step]} by the issue's definition."""
    wheres = wheres or [{}] * len(steps)
    events = deduped(frame, app_id)

    def matches(row, k):
        return row.event_type == steps[k] and all(_attr(row.attributes, p.split(".", 1)[1]) == v
                                                  for p, v in wheres[k].items())

    results = {}
    for user, rows in events.groupby("user_id"):
        rows = rows.sort_values("event_time")
        per_step = [[r.event_time for r in rows.itertuples() if matches(r, k)] for k in range(len(steps))]
        firsts = [r for r in rows.itertuples() if matches(r, 0) and start_ms <= r.event_time < end_ms]
        for start in firsts:
            group = _attr(start.attributes, breakdown.split(".", 1)[1]) if breakdown else None
            times, prev = [start.event_time], start.event_time
            for k in range(1, len(steps)):
                later = [t for t in per_step[k] if prev <= t <= start.event_time + within_ms]
                if not later:
                    break
                prev = min(later)
                times.append(prev)
            for key in (("*", group) if breakdown else ("*",)):
                best = results.setdefault(key, {}).get(user)
                if best is None or len(times) > len(best) or (len(times) == len(best) and times[0] < best[0]):
                    results[key][user] = times
    out = {}
    for key, by_user in results.items():
        table = []
        for k in range(len(steps)):
            spans = [t[k] - t[0] for t in by_user.values() if len(t) > k]
            median = int(np.quantile(np.array(spans), 0.5, method="lower")) if spans else None
            table.append((len(spans), median))
        out[key] = table
    return out


def retention_truth(frame, app_id, start_event, return_event, period, periods, start_ms, end_ms):
    """[(period_start 'YYYY-MM-DD', [n_0, ..., n_{N-1}])] by the issue's definition (UTC, weeks from Monday)."""
    events = deduped(frame, app_id).copy()
    events["time"] = pd.to_datetime(events["event_time"], unit="ms", utc=True)
    starts = events[(events["event_type"] == start_event) & (events["event_time"] >= start_ms)
                    & (events["event_time"] < end_ms)]
    first = starts.groupby("user_id")["time"].min()
    step = pd.Timedelta(days=7 if period == "week" else 1)

    def floor(moment):
        day = moment.normalize()
        return day - pd.Timedelta(days=day.weekday()) if period == "week" else day

    cohorts = {}
    returns = events[events["event_type"] == return_event]
    for user, moment in first.items():
        cohort = floor(moment)
        counts = cohorts.setdefault(cohort, [set() for _ in range(periods)])
        counts[0].add(user)
        for t in returns[returns["user_id"] == user]["time"]:
            k = (floor(t) - cohort) // step
            if 1 <= k < periods:
                counts[k].add(user)
    return [(c.strftime("%Y-%m-%d"), [len(s) for s in sets]) for c, sets in sorted(cohorts.items())]


def write_raw_table(raw_table, frame: pd.DataFrame) -> None:
    """Append the rows (every copy) to the raw Iceberg table in a few commits, as the committer would."""
    from chalicelib.lake.raw_table import to_table_rows

    table = raw_table.table()
    arrow = to_arrow(frame)
    half = arrow.num_rows // 2
    for part in (arrow.slice(0, half), arrow.slice(half)):
        table.append(to_table_rows(part))
