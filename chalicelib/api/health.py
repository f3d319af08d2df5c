"""Health of the components the API depends on."""

from __future__ import annotations

import logging
from typing import Callable, Mapping

from botocore.exceptions import BotoCoreError, ClientError

log = logging.getLogger(__name__)


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
    """``GET /v1/health``: each component's state; ``degraded`` when any is down."""

    def __init__(self, clients, settings, search_client: Callable[[], object] | None = None) -> None:
        self._checks = aws_checks(clients, settings)
        if search_client is not None:
            self._checks["search"] = search_check(search_client)

    def report(self) -> dict:
        return check_components(self._checks)
