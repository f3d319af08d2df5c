"""``/v1/regulations``: privacy requests (delete, suppress, suppress_with_delete, unsuppress) of an app's users.

An app key acts on its own app; an operator's key may name another app (``"app_id"`` in the body)
and sees every app's regulations. ``suppress`` and ``unsuppress`` take effect when accepted (the
ingest routes of this process see them at once, the others within the suppression cache's TTL);
``delete`` and ``suppress_with_delete`` are done by the deletion job (chalicelib/lake/privacy_job.py:
the scheduled job, or ``eventpipe regulations process``), whose status and counts the GET routes show.
"""

from __future__ import annotations

from typing import Any, Callable

import orjson
from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.http.errors import BadRequest, NotFound, ServiceUnavailable
from chalicelib.apps.keys import APP_ID_RE, hash_key
from chalicelib.lake.regulations import MAX_USER_IDS, TYPES, RegulationStore
from chalicelib.stream.envelope import MAX_USER_ID_CHARS

MAX_BODY_BYTES = 1024 * 1024


def parse_request(body: bytes) -> tuple[str, list[str], str | None]:
    """``{"type", "user_ids", "app_id"?}`` -> (type, ids, app) or BadRequest naming the field."""
    if len(body) > MAX_BODY_BYTES:
        raise BadRequest(f"the body is {len(body)} bytes; the limit is {MAX_BODY_BYTES}")
    try:
        doc = orjson.loads(body or b"null")
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the body is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise BadRequest('the body must be a JSON object {"type": ..., "user_ids": [...]}')
    unknown = set(doc) - {"type", "user_ids", "app_id"}
    if unknown:
        raise BadRequest(f"unknown field(s) {', '.join(sorted(map(repr, unknown)))}; allowed: app_id, type, user_ids")
    type_ = doc.get("type")
    if type_ not in TYPES:
        raise BadRequest(f"type must be one of {', '.join(TYPES)}")
    ids = doc.get("user_ids")
    if not isinstance(ids, list) or not 1 <= len(ids) <= MAX_USER_IDS:
        raise BadRequest(f"user_ids must be an array of 1 to {MAX_USER_IDS} user ids")
    for i, user in enumerate(ids):
        if not isinstance(user, str) or not 0 < len(user) <= MAX_USER_ID_CHARS:
            raise BadRequest(f"user_ids[{i}] must be a non-empty string of at most {MAX_USER_ID_CHARS} characters")
    app_id = doc.get("app_id")
    if app_id is not None and (not isinstance(app_id, str) or not APP_ID_RE.fullmatch(app_id)):
        raise BadRequest("app_id must match ^[a-z0-9][a-z0-9_-]{0,63}$")
    return type_, ids, app_id


class RegulationsService:
    def __init__(self, store: RegulationStore, is_operator: Callable[[str], bool],
                 on_change: Callable[[str], None] = lambda app_id: None,
                 pseudonymiser: Callable[[str], Any] | None = None) -> None:
        self._store, self._is_operator, self._on_change = store, is_operator, on_change
        #: An app that pseudonymises user_id stores pseudonyms: the ids asked for are mapped the same way.
        self._pseudonymiser = pseudonymiser

    def create(self, app_id: str, api_key: str | None, body: bytes) -> dict[str, Any]:
        type_, ids, target = parse_request(body)
        operator = self._is_operator(app_id)
        if target is not None and target != app_id and not operator:
            raise BadRequest("app_id: an app key may file regulations for its own app only")
        target = target or app_id
        transform = self._pseudonymiser(target) if self._pseudonymiser is not None else None
        if transform is not None:
            ids = [transform.apply({"user_id": user})["user_id"] for user in ids]
        who = {"app_id": app_id, "key_id": hash_key(api_key or "")[:12], "role": "operator" if operator else "app"}
        reg = self._call(lambda: self._store.create(target, type_, ids, who))
        self._on_change(target)
        return reg.public()

    def show(self, app_id: str, reg_id: str) -> dict[str, Any]:
        reg = self._call(lambda: self._store.get(reg_id)) if len(reg_id) <= 64 and reg_id.isalnum() else None
        if reg is None or (reg.app_id != app_id and not self._is_operator(app_id)):
            raise NotFound(f"no regulation {reg_id[:64]!r} of this app")
        return reg.public()

    def list(self, app_id: str) -> dict[str, Any]:
        scope = None if self._is_operator(app_id) else app_id
        return {"regulations": [r.public() for r in self._call(lambda: self._store.list(scope))]}

    @staticmethod
    def _call(fn):
        try:
            return fn()
        except (ClientError, BotoCoreError) as exc:
            raise ServiceUnavailable(f"the regulations store is unavailable ({type(exc).__name__}); retry later",
                                     headers={"Retry-After": "1"}) from exc
