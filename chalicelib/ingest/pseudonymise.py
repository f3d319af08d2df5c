"""Pseudonymisation at ingest (optional, per app): named fields replaced by a keyed hash before anything is written.

Like Snowplow's PII pseudonymization enrichment: ``eventpipe apps pseudonymise APP --field user_id
--field attributes.email`` stores the fields and a random 256-bit secret of the app in the apps table
(chalicelib/apps/keys.py); every ingest route then replaces each named field's value by
``ps_<HMAC-SHA256(secret, value) in hex>`` (64 hex digits: within the user id's 128 characters)
before validation, so neither the stream, the lake, the search index nor a bad row sees the value.
With ``user_id``, every attribute value equal to the user id is replaced too (the SDK routes keep
the message's ``userId`` / ``distinct_id`` under ``attributes.segment`` / ``attributes.posthog``);
other identifiers (e.g. Segment's ``anonymousId``) are fields of their own to name. The same value always gives the same pseudonym within an app (counts of distinct users stay exact;
joins on the field still work), and differs across apps; without the secret it cannot be reversed
by hashing guesses. A value that is not a string is hashed as its JSON text; null stays null.

Regulations of such an app take the users' real ids: ``/v1/regulations`` pseudonymises them the same way.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any, Iterable

import orjson

PREFIX = "ps_"
#: ``user_id`` or ``attributes.<name>[.<name>...]``.
FIELD_RE = re.compile(r"user_id|attributes(\.[^.\s]{1,128}){1,8}")
MAX_FIELDS = 32


def check_fields(fields: Iterable[str]) -> list[str]:
    """The fields, checked (ValueError naming the bad one)."""
    out = sorted(set(fields))
    if len(out) > MAX_FIELDS:
        raise ValueError(f"at most {MAX_FIELDS} fields")
    for name in out:
        if not FIELD_RE.fullmatch(name):
            raise ValueError(f"field {name!r} must be user_id or attributes.<name>[.<name>...]")
    return out


class Pseudonymiser:
    def __init__(self, fields: Iterable[str], secret: bytes) -> None:
        self._fields = [name.split(".") for name in check_fields(fields)]
        self._secret = secret

    def pseudonym(self, value: Any) -> Any:
        if value is None:
            return None
        text = value if isinstance(value, str) else orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
        return PREFIX + hmac.new(self._secret, text.encode(), hashlib.sha256).hexdigest()

    def apply(self, raw: Any) -> Any:
        """A copy of the raw event with the fields replaced (anything not an object is returned as is:
        validation refuses it)."""
        if not isinstance(raw, dict):
            return raw
        out = dict(raw)
        for path in self._fields:
            if path == ["user_id"]:
                original = out.get("user_id")
                if original is not None:
                    out["user_id"] = self.pseudonym(original)
                    if isinstance(original, str) and isinstance(out.get("attributes"), dict):
                        # the SDK routes keep the message's ids (userId, distinct_id...) in attributes too
                        out["attributes"] = _replaced(out["attributes"], original, out["user_id"])
                continue
            node = out.get("attributes")
            if not isinstance(node, dict):
                continue
            node = out["attributes"] = dict(node)
            for part in path[1:-1]:
                child = node.get(part)
                if not isinstance(child, dict):
                    node = None
                    break
                node[part] = node = dict(child)
            if node is not None and path[-1] in node:
                node[path[-1]] = self.pseudonym(node[path[-1]])
        return out


def _replaced(value: Any, old: str, new: str) -> Any:
    if isinstance(value, str):
        return new if value == old else value
    if isinstance(value, dict):
        return {k: _replaced(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_replaced(v, old, new) for v in value]
    return value
