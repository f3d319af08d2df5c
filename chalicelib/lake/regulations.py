"""Privacy regulations and the suppression list, kept in the DynamoDB state table.

Items (partition key ``pk``)::

    regulation|<id>              one regulation: app, type, status, who asked, when, result counts per
                                 store; ``user_ids`` only while the deletion job needs them
    suppress|<app>|<0-f>         String Set ``users``: keyed hashes (:func:`user_hash`) of the app's
                                 suppressed users, sharded by the hash's first hex digit
    suppressed|<app>|<YYYY-MM-DD> events refused by suppression that day (``GET /v1/pipeline``)

What is kept (the audit): every regulation, forever, with the key id (12 hex digits of the key's
SHA-256, never the key) and role of who asked, the type, how many ids, the SHA-256 of the sorted id
list (to answer "was this list handled?" without holding it), times and counts. The ids themselves
are removed from the item when the deletion job is done with them (at once for suppress and
unsuppress, which need only the hashes of the suppression list). So the store never holds more
personal data than the request did, and only as long as the work needs it.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, Iterable

import orjson

TYPES = ("delete", "suppress", "suppress_with_delete", "unsuppress")
#: Types whose events are removed from the stores by the deletion job.
DELETING = frozenset({"delete", "suppress_with_delete"})
SUPPRESSING = frozenset({"suppress", "suppress_with_delete"})
STATUSES = ("pending", "running", "done", "failed")
MAX_USER_IDS = 5000
SHARDS = "0123456789abcdef"
PREFIX = "regulation|"


def user_hash(app_id: str, user_id: str) -> str:
    """The suppression list's name of a user: 128 bits of SHA-256 over (app, user)."""
    return hashlib.sha256(f"{app_id}\x00{user_id}".encode()).hexdigest()[:32]


def ids_digest(user_ids: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(sorted(set(user_ids))).encode()).hexdigest()


@dataclass
class Regulation:
    id: str
    app_id: str
    type: str
    status: str
    created_at: int
    requested_by: dict[str, str]
    user_count: int
    ids_sha256: str
    user_ids: list[str] = field(default_factory=list)
    started_at: int | None = None
    finished_at: int | None = None
    results: dict[str, int] = field(default_factory=dict)
    error: str | None = None

    def public(self) -> dict:
        """The API's view (no user ids)."""
        return {"id": self.id, "app_id": self.app_id, "type": self.type, "status": self.status,
                "user_count": self.user_count, "ids_sha256": self.ids_sha256, "requested_by": self.requested_by,
                "created_at": self.created_at, "started_at": self.started_at, "finished_at": self.finished_at,
                "results": self.results, "error": self.error}


class RegulationStore:
    def __init__(self, dynamodb, table: str, clock_ms: Callable[[], int] = lambda: int(time.time() * 1000)) -> None:
        self._db, self._table, self._clock_ms = dynamodb, table, clock_ms

    # ------------------------------------------------------------------ regulations
    def create(self, app_id: str, type_: str, user_ids: list[str], requested_by: dict[str, str]) -> Regulation:
        """Store a regulation; suppress/unsuppress take effect now (and are done), deletes wait for the job."""
        ids = sorted(set(user_ids))
        reg = Regulation(id=uuid.uuid4().hex, app_id=app_id, type=type_, status="pending",
                         created_at=self._clock_ms(), requested_by=requested_by, user_count=len(ids),
                         ids_sha256=ids_digest(ids), user_ids=ids if type_ in DELETING else [])
        if type_ in SUPPRESSING:
            self.suppress(app_id, ids)
        elif type_ == "unsuppress":
            self.unsuppress(app_id, ids)
        if type_ not in DELETING:
            reg.status, reg.started_at, reg.finished_at = "done", reg.created_at, self._clock_ms()
            reg.results = {"suppressed" if type_ == "suppress" else "unsuppressed": len(ids)}
        elif type_ in SUPPRESSING:
            reg.results = {"suppressed": len(ids)}
        self.save(reg)
        return reg

    def save(self, reg: Regulation) -> None:
        body = {k: v for k, v in reg.__dict__.items()}
        self._db.put_item(TableName=self._table, Item={
            "pk": {"S": PREFIX + reg.id}, "app_id": {"S": reg.app_id}, "status": {"S": reg.status},
            "created_at": {"N": str(reg.created_at)}, "doc": {"S": orjson.dumps(body).decode()}})

    def get(self, reg_id: str) -> Regulation | None:
        item = self._db.get_item(TableName=self._table, Key={"pk": {"S": PREFIX + reg_id}},
                                 ConsistentRead=True).get("Item")
        return Regulation(**orjson.loads(item["doc"]["S"])) if item else None

    def list(self, app_id: str | None = None, statuses: Iterable[str] | None = None) -> list[Regulation]:
        """Regulations (of one app, of some statuses), oldest first. A scan of the state table:
        regulations are rare, and the table holds little else."""
        values = {":p": {"S": PREFIX}}
        expression = "begins_with(pk, :p)"
        if app_id is not None:
            expression += " AND app_id = :a"
            values[":a"] = {"S": app_id}
        found = []
        for page in self._db.get_paginator("scan").paginate(TableName=self._table, FilterExpression=expression,
                                                            ExpressionAttributeValues=values):
            found += [Regulation(**orjson.loads(item["doc"]["S"])) for item in page["Items"]]
        wanted = set(statuses) if statuses is not None else None
        return sorted((r for r in found if wanted is None or r.status in wanted), key=lambda r: (r.created_at, r.id))

    def due(self) -> list[Regulation]:
        """Deleting regulations not done yet (pending, or running when a job stopped mid-way)."""
        return [r for r in self.list(statuses=("pending", "running")) if r.type in DELETING]

    # ------------------------------------------------------------------ suppression list
    def _shards(self, app_id: str, user_ids: Iterable[str]) -> dict[str, set[str]]:
        shards: dict[str, set[str]] = {}
        for user in user_ids:
            h = user_hash(app_id, user)
            shards.setdefault(h[0], set()).add(h)
        return shards

    def suppress(self, app_id: str, user_ids: Iterable[str]) -> None:
        for shard, hashes in self._shards(app_id, user_ids).items():
            self._db.update_item(TableName=self._table, Key={"pk": {"S": f"suppress|{app_id}|{shard}"}},
                                 UpdateExpression="ADD #u :h", ExpressionAttributeNames={"#u": "users"},
                                 ExpressionAttributeValues={":h": {"SS": sorted(hashes)}})

    def unsuppress(self, app_id: str, user_ids: Iterable[str]) -> None:
        for shard, hashes in self._shards(app_id, user_ids).items():
            self._db.update_item(TableName=self._table, Key={"pk": {"S": f"suppress|{app_id}|{shard}"}},
                                 UpdateExpression="DELETE #u :h", ExpressionAttributeNames={"#u": "users"},
                                 ExpressionAttributeValues={":h": {"SS": sorted(hashes)}})

    def suppressed_hashes(self, app_id: str) -> frozenset[str]:
        """Every suppressed user hash of the app (one BatchGetItem of its 16 shards)."""
        keys = [{"pk": {"S": f"suppress|{app_id}|{s}"}} for s in SHARDS]
        found: set[str] = set()
        request = {self._table: {"Keys": keys, "ConsistentRead": True}}
        while request:
            answer = self._db.batch_get_item(RequestItems=request)
            for item in answer["Responses"].get(self._table, []):
                found |= set(item.get("users", {}).get("SS", []))
            request = answer.get("UnprocessedKeys") or {}
        return frozenset(found)

    def count_suppressed(self, app_id: str, day: str, n: int) -> None:
        self._db.update_item(TableName=self._table, Key={"pk": {"S": f"suppressed|{app_id}|{day}"}},
                             UpdateExpression="ADD #n :n", ExpressionAttributeNames={"#n": "n"},
                             ExpressionAttributeValues={":n": {"N": str(n)}})

    def suppressed_counts(self, app_id: str, days: list[str]) -> dict[str, int]:
        """Events refused by suppression per day (days without any are absent)."""
        counts: dict[str, int] = {}
        for day in days:
            item = self._db.get_item(TableName=self._table, Key={"pk": {"S": f"suppressed|{app_id}|{day}"}}).get("Item")
            if item:
                counts[day] = int(item["n"]["N"])
        return counts
