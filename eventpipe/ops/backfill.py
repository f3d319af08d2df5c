"""``eventpipe backfill``: recompute a metric's final windows for a range from the raw archive.

Each (metric, dt, hour) partition of ``[from, to)`` goes through
:meth:`chalicelib.lake.finalizer.Finalizer.backfill_partition` — the
finalizer's own computation (raw archive, duplicate ``(app_id, event_id)``
removed, the same lateness rules) writing the same deterministic keys, so a
second run leaves the same files. A metric newly added to ``metrics.yaml`` and
a metric whose definition changed (a new fingerprint, hence a fresh, empty
rollup tree: chalicelib/lake/layout.py) get their history this way.

Locally the finalizer runs in-process against the local stack (moto). On AWS
the ``finalize_windows`` function is invoked once per partition with a
CloudWatch-shaped event whose ``detail`` is ``{"backfill": {metric, dt,
hour}}`` (Chalice wraps a schedule handler's input as a CloudWatch event and
needs those fields); ``app.finalize_windows`` hands it to the same method.
That function has a reserved concurrency of 1 (one finalization at a time),
so invocations are sequential by default and a throttled one is retried.
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import orjson

from chalicelib.lake import layout
from chalicelib.processing import MetricSet


class BackfillError(Exception):
    """A backfill request that cannot be run (unknown metric, empty range, failed invocation)."""


@dataclass(frozen=True)
class Partition:
    metric: str
    dt: str
    hour: str


@dataclass(frozen=True)
class Outcome:
    partition: Partition
    action: str  # backfilled | open | waiting-for-archive | failed: ...
    windows: int = 0
    events: int = 0


@dataclass(frozen=True)
class BackfillSummary:
    outcomes: tuple[Outcome, ...]
    seconds: float
    metrics: tuple[str, ...] = field(default=())

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.action.startswith("failed")]

    def describe(self) -> str:
        done = [o for o in self.outcomes if o.action == "backfilled"]
        skipped: dict[str, int] = {}
        for o in self.outcomes:
            if o.action != "backfilled" and not o.action.startswith("failed"):
                skipped[o.action] = skipped.get(o.action, 0) + 1
        lines = [f"backfill {', '.join(self.metrics)}: {len(done)} of {len(self.outcomes)} partition(s) recomputed, "
                 f"{sum(o.windows for o in done)} window row(s), {sum(o.events for o in done)} event(s), "
                 f"{self.seconds:.1f} s"]
        lines += [f"  skipped {n} partition(s): {action}" for action, n in sorted(skipped.items())]
        lines += [f"  FAILED {o.partition.metric} {o.partition.dt}/{o.partition.hour}: {o.action}"
                  for o in self.failed]
        return "\n".join(lines)


def plan(metrics: MetricSet, names: list[str] | None, start_ms: int, end_ms: int) -> list[Partition]:
    """Every (metric, hour) partition of [start_ms, end_ms), hour by hour (metrics of one hour together)."""
    if names is not None:
        unknown = sorted(set(names) - set(metrics.names))
        if unknown:
            raise BackfillError(f"unknown metric(s) {', '.join(unknown)}; known: {', '.join(metrics.names)}")
    if start_ms >= end_ms:
        raise BackfillError("--from must be before --to")
    chosen = [m for m in metrics.names if names is None or m in names]
    first = start_ms // layout.HOUR_MS * layout.HOUR_MS
    return [Partition(name, *layout.dt_hour(h)) for h in range(first, end_ms, layout.HOUR_MS) for name in chosen]


#: One partition -> its outcome.
Runner = Callable[[Partition], Outcome]


def run(partitions: list[Partition], runner: Runner, concurrency: int = 1, progress: bool = True) -> BackfillSummary:
    """Run every partition (``concurrency`` at a time), with a progress bar on stderr."""
    from tqdm import tqdm

    started = time.monotonic()

    def guarded(p: Partition) -> Outcome:
        try:
            return runner(p)
        except Exception as exc:  # noqa: BLE001 - one failed partition is reported, the others go on
            return Outcome(p, f"failed: {type(exc).__name__}: {exc}")

    outcomes: list[Outcome] = []
    with tqdm(total=len(partitions), unit="partition", file=sys.stderr, disable=not progress) as bar, \
            ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        for outcome in pool.map(guarded, partitions):
            outcomes.append(outcome)
            bar.set_postfix_str(f"{outcome.partition.metric} {outcome.partition.dt}/{outcome.partition.hour}")
            bar.update()
    names = tuple(dict.fromkeys(p.metric for p in partitions))
    return BackfillSummary(tuple(outcomes), time.monotonic() - started, names)


def local_runner(finalizer, metrics: MetricSet) -> Runner:
    """In-process: the finalizer of the local stack (one partition at a time)."""
    def one(p: Partition) -> Outcome:
        report = finalizer.backfill_partition(metrics[p.metric], p.dt, p.hour)
        return Outcome(p, report.action, report.rows, report.events)
    return one


def invocation_event(p: Partition) -> dict:
    """The ``finalize_windows`` input for one partition (a CloudWatch event, as Chalice expects)."""
    return {"version": "0", "id": f"backfill-{p.metric}-{p.dt}-{p.hour}", "detail-type": "eventpipe backfill",
            "source": "eventpipe.backfill", "account": "", "time": f"{p.dt}T{p.hour}:00:00Z", "region": "",
            "resources": [], "detail": {"backfill": {"metric": p.metric, "dt": p.dt, "hour": p.hour}}}


def aws_runner(lambda_client, function_name: str, attempts: int = 8, sleep: Callable[[float], None] = time.sleep
               ) -> Runner:
    """One synchronous ``lambda:Invoke`` per partition; throttling (reserved concurrency 1) is retried."""
    def one(p: Partition) -> Outcome:
        for attempt in range(attempts):
            try:
                answer = lambda_client.invoke(FunctionName=function_name, InvocationType="RequestResponse",
                                              Payload=orjson.dumps(invocation_event(p)))
                break
            except lambda_client.exceptions.TooManyRequestsException:
                if attempt + 1 == attempts:
                    raise
                sleep(min(30.0, 2.0 ** attempt))
        payload = orjson.loads(answer["Payload"].read() or b"null")
        if answer.get("FunctionError"):
            raise BackfillError(f"{answer['FunctionError']}: {payload}")
        report = payload["backfill"]
        return Outcome(p, report["action"], int(report.get("rows", 0)), int(report.get("events", 0)))
    return one
