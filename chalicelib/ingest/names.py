"""Event names from SDKs -> valid ``event_type`` values, by one stable rule.

Segment names events in prose (``Order Completed``), PostHog prefixes its own
with ``$`` (``$pageview``); the envelope wants ``^[a-z][a-z0-9_]{0,63}$``.
:func:`event_type_for` maps any name to a valid type, always the same one for
the same name (no state, no configuration), so a dashboard keyed on
``order_completed`` keeps working whichever SDK sent it. The name as sent is
kept in the event's attributes by the caller.

The rule:

1. A name that already is a valid type is kept as it is (``level_up``).
2. Otherwise: Unicode NFKC, case-folded, accents removed (NFKD without combining
   marks); every run of characters other than ``a-z0-9`` becomes one ``_``; ``_``
   is stripped at both ends (``Order Completed`` -> ``order_completed``,
   ``$pageview`` -> ``pageview``, ``Café Opened`` -> ``cafe_opened``).
3. A result starting with a digit gets the prefix ``e_`` (``3D View`` -> ``e_3d_view``).
4. A short hash suffix ``_<8 hex>`` (SHA-256 of the name's words, case-folded)
   is added when the result would be longer than 64 characters (it is cut to
   make room) or when letters or digits were lost because they have no ASCII
   spelling (``구매 완료`` -> ``event_<hash>``, ``Pay 결제`` -> ``pay_<hash>``), so
   different names stay different types.
"""

from __future__ import annotations

import functools
import hashlib
import re
import unicodedata

from chalicelib.stream.envelope import EVENT_TYPE_RE

MAX_CHARS = 64
_HASH_CHARS = 8
_NOT_SLUG = re.compile(r"[^a-z0-9]+")
_NOT_WORD = re.compile(r"[\W_]+")
#: Names up to this length are memoized (SDKs send few distinct names; long ones are not kept).
_CACHED_CHARS = 256


def _digest(folded: str) -> str:
    words = _NOT_WORD.sub("_", folded).strip("_")
    return hashlib.sha256(words.encode()).hexdigest()[:_HASH_CHARS]


def event_type_for(name: str) -> str:
    """The event type an SDK event name maps to (see the module docstring for the rule).

    Args:
        name: the name as sent (``Order Completed``, ``$pageview``, ...).

    Returns:
        A string matching ``^[a-z][a-z0-9_]{0,63}$``; the same for the same name.
    """
    if EVENT_TYPE_RE.fullmatch(name):
        return name
    return _cached(name) if len(name) <= _CACHED_CHARS else _normalize(name)


def _normalize(name: str) -> str:
    folded = unicodedata.normalize("NFKC", name).casefold()
    decomposed = unicodedata.normalize("NFKD", folded)
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    slug = _NOT_SLUG.sub("_", plain).strip("_")
    lost = any(ch.isalnum() and not ch.isascii() for ch in plain)
    if slug[:1].isdigit():
        slug = "e_" + slug
    if not lost and slug and len(slug) <= MAX_CHARS:
        return slug
    head = slug[:MAX_CHARS - _HASH_CHARS - 1].rstrip("_") or "event"
    return f"{head}_{_digest(folded)}"


_cached = functools.lru_cache(maxsize=4096)(_normalize)
