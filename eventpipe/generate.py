"""Reproducible synthetic game and GPS events (the course's two workloads).

Same ``seed`` and ``start_ms`` -> byte-identical output.
"""

from __future__ import annotations

import random
from typing import Iterator

import orjson

from chalicelib.ingest.validation import ms_to_iso

CHARACTER_CLASSES = ("warrior", "mage", "archer", "rogue", "priest")
EVENT_MIX = (("session_start", 8), ("level_up", 10), ("purchase", 6), ("match_end", 12),
             ("gps_ping", 50), ("chat_message", 14))
# City centres (lat, lon) the GPS pings scatter around.
CITIES = ((37.5665, 126.9780), (35.1796, 129.0756), (37.4563, 126.7052), (35.8714, 128.6014),
          (33.4996, 126.5312))
CHAT_WORDS = ("gg", "wp", "nice", "raid", "boss", "heal", "need", "tank", "lag", "again", "dragon",
              "loot", "party", "guild", "quest", "sword", "potion", "castle")


def generate_events(count: int, seed: int, start_ms: int, duration_ms: int = 3_600_000,
                    users: int = 500) -> Iterator[dict]:
    """Yield ``count`` client events (the POST /v1/events shape) in time order."""
    rng = random.Random(seed)
    kinds = [k for k, _ in EVENT_MIX]
    weights = [w for _, w in EVENT_MIX]
    player_class = {u: rng.choice(CHARACTER_CLASSES) for u in range(users)}
    player_city = {u: rng.choice(CITIES) for u in range(users)}
    offsets = sorted(rng.randrange(duration_ms) for _ in range(count))
    for n, offset in enumerate(offsets):
        user = rng.randrange(users)
        kind = rng.choices(kinds, weights)[0]
        character_class = player_class[user]
        attributes: dict
        if kind == "session_start":
            attributes = {"character_class": character_class, "platform": rng.choice(("ios", "android", "pc"))}
        elif kind == "level_up":
            attributes = {"character_class": character_class, "level": rng.randint(2, 60),
                          "value": rng.randint(1, 5)}
        elif kind == "purchase":
            attributes = {"character_class": character_class, "item": rng.choice(("potion", "sword", "skin")),
                          "value": round(rng.choice((0.99, 4.99, 9.99, 19.99)), 2), "currency": "USD"}
        elif kind == "match_end":
            attributes = {"character_class": character_class, "value": rng.randint(0, 3000),
                          "result": rng.choice(("win", "loss"))}
        elif kind == "gps_ping":
            lat, lon = player_city[user]
            attributes = {"lat": round(lat + rng.uniform(-0.05, 0.05), 6),
                          "lon": round(lon + rng.uniform(-0.05, 0.05), 6),
                          "speed_kmh": round(rng.uniform(0, 60), 1)}
        else:
            attributes = {"character_class": character_class,
                          "text": " ".join(rng.choice(CHAT_WORDS) for _ in range(rng.randint(1, 6)))}
        yield {
            "event_id": f"gen-{seed}-{n}",
            "event_type": kind,
            "event_time": ms_to_iso(start_ms + offset),
            "user_id": f"user-{user}",
            "attributes": attributes,
        }


def write_ndjson(path: str, events: Iterator[dict]) -> int:
    written = 0
    with open(path, "wb") as handle:
        for event in events:
            handle.write(orjson.dumps(event) + b"\n")
            written += 1
    return written
