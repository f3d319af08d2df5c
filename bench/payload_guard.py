"""Payload guard: peak memory of the API process while it answers pathological bodies.

Starts the local stack (moto, search server, API, runner), then sends each
pathological body of about 5 MiB (the ``POST /v1/events`` cap) to the route it
targets and reads the API process's peak RSS for that one request: the peak is
reset before each body (``/proc/<pid>/clear_refs``, ``5``) and read after it
(``VmHWM`` in ``/proc/<pid>/status``). Prints status, time, peak RSS and the
growth over the RSS before the request, one line per body.

    .venv/bin/python bench/payload_guard.py [--repeat 1] [--smoke]
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from eventpipe.local.stack import Stack, StackConfig, free_port  # noqa: E402

MIB = 1024 * 1024
CAP = 5 * MIB
EVENT = b'{"event_type":"a","event_time":1,"attributes":{"s":"'


def fill(head: bytes, unit: bytes, tail: bytes, size: int = CAP) -> bytes:
    """``head + unit * n + tail`` as close to ``size`` bytes as the unit allows, never over."""
    n = (size - len(head) - len(tail)) // len(unit)
    return head + unit * n + tail


def bodies() -> list[tuple[str, str, str, bytes, dict[str, str]]]:
    """(name, route, content type, body, extra headers)."""
    json_type, nd = "application/json", "application/x-ndjson"
    return [
        ("deep nesting (5 MiB of '[')", "/v1/events", json_type, b"[" * CAP, {}),
        ("nesting 300 levels, repeated", "/v1/events", json_type,
         fill(b"[", b"[" * 300 + b"]" * 300 + b",", b"0]"), {}),
        ("a 5-million-digit number", "/v1/events", json_type, fill(b"[", b"9", b"]"), {}),
        ("1e400 repeated", "/v1/events", json_type, fill(b"[", b"1e400,", b"0]"), {}),
        ("one 5 MiB string attribute", "/v1/events", json_type, fill(b"[" + EVENT, b"x", b'"}}]'), {}),
        ("invalid UTF-8 (\\xff)", "/v1/events", json_type, fill(b'["', b"\xff", b'"]'), {}),
        ("raw surrogates (\\xed\\xa0\\x80)", "/v1/events", json_type, fill(b'["', b"\xed\xa0\x80", b'"]'), {}),
        ("escaped lone surrogates", "/v1/events", json_type, fill(b'["', b"\\ud800", b'"]'), {}),
        ("duplicate keys", "/v1/events", json_type, fill(b'[{"event_type":"a","event_time":1', b',"k":1', b"}]"), {}),
        ("NaN / Infinity", "/v1/events", json_type, fill(b"[", b"NaN,Infinity,", b"0]"), {}),
        ("a million tiny events (NDJSON)", "/v1/events", nd, b"{}\n" * 1_000_000, {}),
        ("1.7 million empty objects (JSON array)", "/v1/events", json_type, fill(b"[", b"{},", b"{}]"), {}),
        ("1.7 million small numbers (JSON array)", "/v1/events", json_type, fill(b"[", b"0,", b"0]"), {}),
        ("5 MiB + 1 byte", "/v1/events", json_type, b" " * CAP + b"[]", {}),
        ("gzip bomb (200 MiB of zeros)", "/v1/events", json_type, gzip.compress(b"0" * (200 * MIB), 9),
         {"Content-Encoding": "gzip"}),
        ("Segment batch of 5 MiB", "/v1/batch", json_type, fill(b'{"batch":[', b"{},", b"{}]}"), {}),
        ("PostHog: 1.7 million empty events", "/batch", json_type, fill(b'{"api_key":"demo-key","batch":[',
                                                                        b"{},", b"{}]}"), {}),
        ("PostHog: deep nesting", "/batch", json_type, b"[" * CAP, {}),
    ]


def status_kb(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise KeyError(name)


def reset_peak(pid: int) -> bool:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def send(port: int, route: str, content_type: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    connection.request("POST", route, body=body, headers={"x-api-key": "demo-key", "Content-Type": content_type,
                                                          **headers})
    response = connection.getresponse()
    payload = response.read()
    connection.close()
    return response.status, payload


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=1, help="send each body this many times (peak of all)")
    parser.add_argument("--smoke", action="store_true", help="CI: three of the bodies only")
    args = parser.parse_args()
    chosen = bodies()[:3] if args.smoke else bodies()
    config = StackConfig(moto_port=free_port(), http_port=free_port(), search_port=free_port(),
                         project_dir=str(Path(__file__).resolve().parent.parent), quiet=True)
    with Stack(config) as stack:
        pid = dict(stack.children)["api"].pid
        send(config.http_port, "/v1/events", "application/json", b'[{"event_type":"warm","event_time":1}]', {})
        print(f"API process {pid}: RSS {status_kb(pid, 'VmRSS') / 1024:.1f} MiB after a first request; "
              f"peak reset per body: {reset_peak(pid)}")
        print(f"{'body':42} {'route':11} {'bytes':>9} {'status':>6} {'time s':>7} {'RSS before':>10} "
              f"{'peak':>8} {'growth':>8}  answer")
        for name, route, content_type, body, headers in chosen:
            before = status_kb(pid, "VmRSS")
            reset_peak(pid)
            started = time.perf_counter()
            for _ in range(args.repeat):
                status, payload = send(config.http_port, route, content_type, body, headers)
            elapsed = (time.perf_counter() - started) / args.repeat
            peak = status_kb(pid, "VmHWM")
            print(f"{name:42} {route:11} {len(body):9d} {status:6d} {elapsed:7.2f} {before / 1024:8.1f}Mi "
                  f"{peak / 1024:6.1f}Mi {(peak - before) / 1024:+6.1f}Mi  {payload[:90].decode(errors='replace')}")


if __name__ == "__main__":
    main()
