"""Health of the components the API depends on."""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Mapping

from botocore.exceptions import BotoCoreError, ClientError

log = logging.getLogger(__name__)

#: Seconds a health report is reused (per process); a degraded one at most DEGRADED_CACHE_S, so a recovery shows soon.
CACHE_S = 5.0
DEGRADED_CACHE_S = 1.0


def check_components(checks: Mapping[str, Callable[[], str | None]]) -> dict:
    """Run each check; a check returns a detail string or raises on failure."""
    components = {}
    for name, check in checks.items():
        try:
            detail = check()
            components[name] = {"status": "ok", **({"detail": detail} if detail else {})}
        except (ClientError, BotoCoreError, OSError, RuntimeError) as exc:
            # The endpoint needs no key: say what failed, keep the details (ARNs, hosts) in the log.
            log.warning("health: %s is down: %s", name, exc)
            code = exc.response.get("Error", {}).get("Code") if isinstance(exc, ClientError) else None
            components[name] = {"status": "down", "error": code or type(exc).__name__}
    healthy = all(c["status"] == "ok" for c in components.values())
    return {"status": "ok" if healthy else "degraded", "components": components}


def search_check(client: Callable[[], object]) -> Callable[[], str | None]:
    def search() -> str:
        try:
            health = client().cluster.health(request_timeout=2)
        except Exception as exc:  # noqa: BLE001 - any failure means the component is down
            raise RuntimeError(f"{type(exc).__name__}: {exc}") from exc
        if health.get("status") == "red":
            raise RuntimeError("cluster status red")
        return f"cluster {health.get('status')}"

    return search


def aws_checks(clients, settings) -> dict[str, Callable[[], str | None]]:
    def stream() -> str:
        summary = clients.kinesis.describe_stream_summary(StreamName=settings.stream_name)
        description = summary["StreamDescriptionSummary"]
        if description["StreamStatus"] not in ("ACTIVE", "UPDATING"):
            raise RuntimeError(f"stream is {description['StreamStatus']}")
        return f"{description['OpenShardCount']} open shard(s)"

    def apps_table() -> None:
        clients.dynamodb.describe_table(TableName=settings.apps_table)

    def bucket() -> None:
        clients.s3.head_bucket(Bucket=settings.bucket)

    return {"kinesis": stream, "apps_table": apps_table, "s3": bucket}


class HealthService:
    """``GET /v1/health``: each component's state; ``degraded`` when any is down.

    The endpoint needs no key, and a check is a call to each component (Kinesis allows 20
    DescribeStreamSummary calls per second per account): the report is computed at most once
    per ``cache_s`` per process, by one caller at a time, and every call in between gets it
    (with ``checked_at_ms`` and ``cached: true``). A flood of health calls costs the components
    nothing more than one check per ``cache_s`` per running instance.
    """

    def __init__(self, clients, settings, search_client: Callable[[], object] | None = None,
                 cache_s: float = CACHE_S, monotonic: Callable[[], float] = time.monotonic,
                 clock_ms: Callable[[], int] = lambda: int(time.time() * 1000)) -> None:
        self._checks = aws_checks(clients, settings)
        if search_client is not None:
            self._checks["search"] = search_check(search_client)
        self._cache_s, self._monotonic, self._clock_ms = cache_s, monotonic, clock_ms
        self._last: tuple[float, dict] | None = None
        self._lock = threading.Lock()

    def report(self) -> dict:
        if self._fresh(self._last):
            return {**self._last[1], "cached": True}
        with self._lock:  # one check at a time: the others wait for it and take its result
            last = self._last
            if self._fresh(last):
                return {**last[1], "cached": True}
            started = self._monotonic()
            fresh = {**check_components(self._checks), "checked_at_ms": self._clock_ms()}
            self._last = (started, fresh)
        return {**fresh, "cached": False}

    def _fresh(self, last: tuple[float, dict] | None) -> bool:
        if last is None:
            return False
        period = self._cache_s if last[1]["status"] == "ok" else min(self._cache_s, DEGRADED_CACHE_S)
        return self._monotonic() - last[0] < period
