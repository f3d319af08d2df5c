"""What each shipped view and named query must answer, checked against plain Python (tests/factories/query_lake.py).

Shared by the DuckDB suite (test_sql.py) and the Trino suite (test_trino.py): a check receives the
rows an engine answered, or ``run(name, app, **params) -> rows`` for a named query, and compares
them with the truth computed from the events: counts and sums exactly, distinct users of the views
exactly (final rows and exact sets), across windows within 3 + 6.5 % of the truth (HyperLogLog).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime, timezone
from typing import Callable

import pytest

import numpy as np

from chalicelib.processing import ddsketch
from tests.factories.lake import T0
from tests.factories.query_lake import HOUR, MINUTE, LakeData, dedupe, raw_events, view_truth

APPS = ("alpha", "beta")
KEYS = {"alpha": "alpha-key", "beta": "beta-key"}  # the API key of each app
VIEWS = ("event_counts", "class_activity", "region_activity", "active_users_5m", "match_duration")
QUERIES = ("events_per_minute", "daily_active_users", "top_users", "class_activity", "region_heatmap",
           "late_events", "bad_rows_by_reason", "active_users", "match_durations", "sessions")
#: Named queries checked on a lake of their own (tests/integration/query/test_insights_sql.py), and the
#: parameters without a default they need to run here.
INSIGHT_QUERIES = ("funnel", "retention")
REQUIRED_PARAMS = {"funnel": {"step1": "view", "step2": "cart", "step3": "checkout", "step4": "buy"},
                   "retention": {"start_event": "view", "return_event": "buy"}}
Run = Callable[..., list]


def ms(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return int(value.timestamp() * 1000)


def close(estimate: int, truth: int) -> bool:
    return abs(estimate - truth) <= 3 + 0.065 * truth


def within_one_percent(estimate: float, truth: float) -> bool:
    """The quantile sketch's guarantee (relative accuracy 0.01, plus float rounding)."""
    return abs(estimate - truth) <= 0.01 * abs(truth) * (1 + 1e-9)


def exact_quantile(values: list[float], percent: int) -> float:
    """The quantile the measure estimates: rank floor(q * (n - 1)) of the sorted values."""
    return float(np.quantile(np.asarray(values, dtype=np.float64), percent / 100, method="lower"))


# ------------------------------------------------------------------ views
def event_counts_view(rows: list[dict], data: LakeData, app: str) -> None:
    truth = view_truth(data, "event_counts", app)
    got = {(ms(r["window_start"]), r["event_type"]): r for r in rows}
    assert got.keys() == truth.keys()
    for key, t in truth.items():
        row = got[key]
        assert (row["count"], row["late_count"]) == (t.count, t.late), key
        assert row["users"] == len(t.users), (key, row["users"], len(t.users))  # exact: <= 4,096 users
        assert ms(row["window_end"]) - ms(row["window_start"]) == MINUTE
        assert row["dt"] == "2026-01-01"
    # Retried events count twice in the partial hour only; a straggler after finalization is hidden
    # where its window has final rows (12:45) and shown where it has none (12:30).
    raw = raw_events(data, app)
    in_final_hour = sum(1 for e in raw if T0 <= e["event_time"] < T0 + HOUR and e["event_id"] != "straggler-1")
    assert sum(r["count"] for r in rows if ms(r["window_start"]) < T0 + HOUR) == in_final_hour
    if app == "alpha":
        assert got[(T0 + 30 * MINUTE, "level_up")]["count"] == 1
        assert got[(T0 + 45 * MINUTE, "level_up")]["count"] == sum(
            1 for e in raw if e["event_type"] == "level_up" and T0 + 45 * MINUTE <= e["event_time"] < T0 + 46 * MINUTE
            and e["event_id"] != "straggler-1")


def stages_overlap(stage_rows: list[dict], view_rows: list[dict]) -> None:
    """Both stages are in a rollup table, overlapping: summing every row would count hour 12 twice."""
    by_stage = {r["stage"]: r["n"] for r in stage_rows}
    assert set(by_stage) == {"final", "partial"} and sum(by_stage.values()) > sum(r["count"] for r in view_rows)


def class_activity_view(rows: list[dict], data: LakeData, app: str) -> None:
    truth = view_truth(data, "class_activity", app)
    got = {(ms(r["window_start"]), r["character_class"]): r for r in rows}
    assert got.keys() == truth.keys()
    for key, t in truth.items():
        row = got[key]
        assert (row["count"], row["late_count"], row["value_n"]) == (t.count, t.late, len(t.values)), key
        if t.values:
            assert row["value_sum"] == pytest.approx(sum(t.values))
            assert (row["value_min"], row["value_max"]) == (min(t.values), max(t.values))
            assert row["value_avg"] == pytest.approx(sum(t.values) / len(t.values))
        else:
            assert (row["value_sum"], row["value_min"], row["value_max"], row["value_avg"]) == (None,) * 4
        assert row["users"] == len(t.users)  # exact: final rows and exact sets (<= 4,096 users)


def region_activity_view(rows: list[dict], data: LakeData, app: str) -> None:
    truth = view_truth(data, "region_activity", app)
    got = {(ms(r["window_start"]), r["geohash5"]): r for r in rows}
    assert got.keys() == truth.keys()
    for key, t in truth.items():
        assert (got[key]["count"], got[key]["late_count"]) == (t.count, t.late), key
        assert got[key]["users"] == len(t.users)


def active_users_5m_view(rows: list[dict], data: LakeData, app: str) -> None:
    truth = view_truth(data, "active_users_5m", app)
    got = {ms(r["window_start"]): r for r in rows}
    assert got.keys() == {start for start, _ in truth}
    for (start, _), t in truth.items():
        assert ms(got[start]["window_end"]) - start == 5 * MINUTE
        assert got[start]["late_count"] == t.late, start
        assert got[start]["users"] == len(t.users), (start, got[start]["users"], len(t.users))


def match_duration_view(rows: list[dict], data: LakeData, app: str) -> None:
    truth = view_truth(data, "match_duration", app)
    got = {(ms(r["window_start"]), r["character_class"]): r for r in rows}
    assert got.keys() == truth.keys() and len(truth) > 20
    assert {start // HOUR * HOUR for start, _ in truth} == {T0, T0 + HOUR}  # final and partial windows
    for key, t in truth.items():
        row = got[key]
        assert (row["count"], row["late_count"]) == (len(t.values), t.late), key
        assert ms(row["window_end"]) - ms(row["window_start"]) == 5 * MINUTE
        for percent in (50, 90, 99):
            exact = exact_quantile(t.values, percent)
            assert within_one_percent(row[f"duration_p{percent}"], exact), (key, percent, exact)


VIEW_CHECKS = {"match_duration": match_duration_view, "event_counts": event_counts_view, "class_activity": class_activity_view,
               "region_activity": region_activity_view, "active_users_5m": active_users_5m_view}


# ------------------------------------------------------------------ named queries
def events_per_minute(run: Run, data: LakeData, app: str) -> None:
    truth = view_truth(data, "event_counts", app)
    rows = run("events_per_minute", app)
    assert [(ms(r["minute"]), r["event_type"]) for r in rows] == sorted(truth)
    for row in rows:
        t = truth[(ms(row["minute"]), row["event_type"])]
        assert (row["count"], row["late_count"]) == (t.count, t.late)
        assert row["users"] == len(t.users)
    # A time range: from included, to excluded.
    start, end = T0 + 50 * MINUTE, T0 + 65 * MINUTE
    ranged = run("events_per_minute", app, **{"from": "2026-01-01T12:50:00Z", "to": "2026-01-01T13:05:00Z"})
    assert {(ms(r["minute"]), r["event_type"]) for r in ranged} == {k for k in truth if start <= k[0] < end}


def daily_active_users(run: Run, data: LakeData, app: str) -> None:
    days = defaultdict(list)
    for event in raw_events(data, app):
        days[datetime.fromtimestamp(event["event_time"] / 1000, timezone.utc).strftime("%Y-%m-%d")].append(event)
    expected = [{"event_date": day, "active_users": len({e["user_id"] for e in events}),
                 "event_count": len(events)} for day, events in sorted(days.items())]
    assert run("daily_active_users", app) == expected
    assert [r["event_date"] for r in expected] == ["2025-12-24", "2026-01-01"]  # the too-old ones are archived


def top_users(run: Run, data: LakeData, app: str) -> None:
    per_user = defaultdict(list)
    for event in raw_events(data, app):
        per_user[event["user_id"]].append(event)
    ranking = sorted(per_user.items(), key=lambda item: (-len(item[1]), item[0]))[:7]
    rows = run("top_users", app, limit="7")
    assert [(r["user_id"], r["event_count"]) for r in rows] == [(u, len(ev)) for u, ev in ranking]
    for row, (_, events) in zip(rows, ranking):
        assert row["event_types"] == len({e["event_type"] for e in events})
        assert ms(row["first_event_time"]) == min(e["event_time"] for e in events)
        assert ms(row["last_event_time"]) == max(e["event_time"] for e in events)
    assert len(run("top_users", app)) == 20  # the declared default


def class_activity(run: Run, data: LakeData, app: str) -> None:
    truth = view_truth(data, "class_activity", app)
    classes = defaultdict(lambda: {"count": 0, "users": set(), "values": [], "minutes": 0, "peak": 0})
    for (_, cls), t in truth.items():
        c = classes[cls]
        c["count"] += t.count
        c["users"] |= t.users
        c["values"] += t.values
        c["minutes"] += 1
        c["peak"] = max(c["peak"], len(t.users))
    rows = run("class_activity", app)
    assert {r["character_class"] for r in rows} == set(classes)
    assert [r["event_count"] for r in rows] == sorted((c["count"] for c in classes.values()), reverse=True)
    for row in rows:
        c = classes[row["character_class"]]
        assert (row["event_count"], row["active_minutes"]) == (c["count"], c["minutes"])
        assert close(row["users"], len(c["users"])), (row, len(c["users"]))
        assert close(row["peak_minute_users"], c["peak"])
        assert row["value_sum"] == pytest.approx(sum(c["values"]))
        assert (row["value_min"], row["value_max"]) == (min(c["values"]), max(c["values"]))
        assert row["value_avg"] == pytest.approx(sum(c["values"]) / len(c["values"]))


def region_heatmap(run: Run, data: LakeData, app: str) -> None:
    truth = view_truth(data, "region_activity", app)
    cells = defaultdict(lambda: {"pings": 0, "users": set(), "minutes": []})
    for (start, cell), t in truth.items():
        cells[cell]["pings"] += t.count
        cells[cell]["users"] |= t.users
        cells[cell]["minutes"].append(start)
    rows = run("region_heatmap", app)
    assert {r["geohash5"]: r["pings"] for r in rows} == {k: v["pings"] for k, v in cells.items()}
    assert [r["pings"] for r in rows] == sorted((r["pings"] for r in rows), reverse=True)
    for row in rows:
        cell = cells[row["geohash5"]]
        assert close(row["users"], len(cell["users"]))
        assert (ms(row["first_minute"]), ms(row["last_minute"])) == (min(cell["minutes"]), max(cell["minutes"]))


def late_events(run: Run, data: LakeData, app: str) -> None:
    if app == "beta":
        assert run("late_events", "beta") == []
        return
    expected = []
    for metric in ("active_users_5m", "class_activity", "event_counts", "region_activity"):
        windows = defaultdict(lambda: [0, 0])
        for (start, _), t in view_truth(data, metric, "alpha").items():
            windows[start][0] += t.late
            windows[start][1] += t.count
        expected += [(metric, start, late, None if metric == "active_users_5m" else count)
                     for start, (late, count) in sorted(windows.items()) if late]
    rows = run("late_events", "alpha")
    assert [(r["metric"], ms(r["window_start"]), r["late_count"], r["event_count"]) for r in rows] == expected
    # late-1 (12:50, hour 12: carried into the final file), late-2 (13:02: 2 final + 3 partial 5m
    # windows), straggler-2 (12:30, a partial of a window without final rows); straggler-1 is hidden.
    assert Counter(r["metric"] for r in rows) == {"event_counts": 3, "class_activity": 2, "region_activity": 1,
                                                  "active_users_5m": 15}


def bad_rows_by_reason(run: Run, data: LakeData, app: str) -> None:
    rows = run("bad_rows_by_reason", app)
    assert [(r["consumer"], r["bad_rows"], r["first_day"]) for r in rows] == [("aggregate", data.too_old[app],
                                                                                 "2026-01-01")]
    assert rows[0]["reason"] == "too_late"


def match_durations(run: Run, data: LakeData, app: str) -> None:
    classes = defaultdict(lambda: {"values": [], "windows": 0, "slowest": []})
    for (_, cls), t in view_truth(data, "match_duration", app).items():
        classes[cls]["values"] += t.values
        classes[cls]["windows"] += 1
        classes[cls]["slowest"].append(exact_quantile(t.values, 99))
    rows = run("match_durations", app)
    assert {r["character_class"] for r in rows} == set(classes)
    assert [r["matches"] for r in rows] == sorted((len(c["values"]) for c in classes.values()), reverse=True)
    for row in rows:
        c = classes[row["character_class"]]
        assert (row["matches"], row["windows"]) == (len(c["values"]), c["windows"])
        merged = ddsketch.sketch_of(c["values"])  # one pass over every window's values
        for percent in (50, 90, 99):
            assert within_one_percent(row[f"p{percent}"], exact_quantile(c["values"], percent))
            assert row[f"p{percent}"] == pytest.approx(ddsketch.quantile_of(merged, percent, 100), rel=1e-12)
        assert within_one_percent(row["slowest_window_p99"], max(c["slowest"]))
    ranged = run("match_durations", app, **{"from": "2026-01-01T13:00:00Z", "to": "2026-01-01T13:10:00Z"})
    assert sum(r["windows"] for r in ranged) == sum(1 for start, _ in view_truth(data, "match_duration", app)
                                                     if T0 + HOUR <= start < T0 + HOUR + 10 * MINUTE)


def active_users(run: Run, data: LakeData, app: str) -> None:
    truth = view_truth(data, "active_users_5m", app)
    rows = run("active_users", app)
    assert [ms(r["minute"]) for r in rows] == sorted(start + 5 * MINUTE for start, _ in truth)
    for row in rows:
        assert row["users"] == len(truth[(ms(row["window_start"]), None)].users)


def sessions(run: Run, data: LakeData, app: str) -> None:
    """The sessions table holds the finalized hour (12:00): the events archived by then, deduplicated,
    cut where a user's next event comes more than 30 minutes after the previous one."""
    events = [e for e in dedupe(data.events(data.archived[:data.archived_at_final]))
              if e["app_id"] == app and e.get("user_id") and T0 <= e["event_time"] < T0 + HOUR]
    found: list[list] = []  # [user, start, end, events]
    for e in sorted(events, key=lambda e: (e["user_id"], e["event_time"], e["event_id"])):
        if found and found[-1][0] == e["user_id"] and e["event_time"] - found[-1][2] <= 30 * MINUTE:
            found[-1][2], found[-1][3] = e["event_time"], found[-1][3] + 1
        else:
            found.append([e["user_id"], e["event_time"], e["event_time"], 1])
    durations = sorted(end - start for _, start, end, _ in found)
    n = len(durations)
    (row,) = run("sessions", app)
    assert n > 10
    assert row == {"sessions": n, "users": len({s[0] for s in found}), "events": len(events),
                   "bounces": sum(1 for s in found if s[3] == 1),
                   "bounce_rate": sum(1 for s in found if s[3] == 1) / n,
                   "median_duration_s": (durations[(n - 1) // 2] + durations[n // 2]) / 2 / 1000}


QUERY_CHECKS = {"events_per_minute": events_per_minute, "daily_active_users": daily_active_users,
                "top_users": top_users, "class_activity": class_activity, "region_heatmap": region_heatmap,
                "late_events": late_events, "bad_rows_by_reason": bad_rows_by_reason, "active_users": active_users,
                "match_durations": match_durations, "sessions": sessions}


# ------------------------------------------------------------------ exact distinct counts (app gamma)
def gamma_python_rows(clients, view: str) -> dict[int, tuple[int, bool]]:
    """window start -> (users, exact) as the Python reader (the metrics API) answers for gamma."""
    from chalicelib.lake.rollups import read_windows_status
    from chalicelib.processing import load_metrics
    status = read_windows_status(clients.s3, clients.settings.bucket, load_metrics()[view], T0, T0 + 2 * HOUR, "gamma")
    return {r["window_start"]: (r["users"], "users" not in flags)
            for r, flags in zip(status.rows.to_pylist(), status.estimated.to_pylist())}


def gamma_exact_distinct(view_rows: dict[str, list[dict]], python: dict[str, dict], data: LakeData) -> None:
    """Views give what the Python reader gives where it is exact: a final row's exact count (5,000
    users at 12:10) and the union of exact partial sets (3,000 at 13:06); above 4,096 users in
    partials both estimate (13:05), within the bound."""
    truth = data.gamma_users
    users = {start: rows for start, rows in truth.items()}
    got = {ms(r["window_start"]): r["users"] for r in view_rows["event_counts"]}
    assert got.keys() == users.keys()
    for start, exact in [(T0 + 10 * MINUTE, True), (T0 + 66 * MINUTE, True), (T0 + 65 * MINUTE, False)]:
        assert python["event_counts"][start][1] == exact, start
        if exact:
            assert got[start] == python["event_counts"][start][0] == len(truth[start]), start
        else:
            assert close(got[start], len(truth[start])) and close(python["event_counts"][start][0], len(truth[start]))
    hopping = {ms(r["window_start"]): r["users"] for r in view_rows["active_users_5m"]}
    assert hopping.keys() == python["active_users_5m"].keys()
    for start, value in hopping.items():
        union = set().union(*[truth.get(start + k * MINUTE, set()) for k in range(5)])
        python_value, exact = python["active_users_5m"][start]
        assert exact == (len(union) <= 4096 or start < T0 + HOUR), start
        if exact:
            assert value == python_value == len(union), start
        else:
            assert close(value, len(union)) and close(python_value, len(union)), start
