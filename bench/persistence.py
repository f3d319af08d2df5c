"""Save and restore of the local stack's data folder (eventpipe/local/persistence.py) on a moto server.

    .venv/bin/python bench/persistence.py --objects 1000 --size 100000

Puts N objects of SIZE bytes into moto's lake bucket, then times a first save (every object
fetched), a second save with nothing changed (the ETag check only) and a restore into a
reset moto.

    .venv/bin/python bench/persistence.py --restart 100000

The restart of the whole stack: `eventpipe run --data DIR` on free ports, `send` of N events,
Ctrl-C (drain and save), then `eventpipe run` again, timed from its start to the first 200 of
GET /v1/health (the restart figure), to the banner, and to the end of the search rebuild
("search: caught up", in the background).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

for _name, _value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                      ("AWS_DEFAULT_REGION", "us-east-1")):
    os.environ.setdefault(_name, _value)


class StackRun:
    """One `eventpipe run` process on free ports, its output kept with the time each line arrived."""

    def __init__(self, data: str, ports: dict[str, int]) -> None:
        import subprocess
        import threading

        env = {**os.environ, **{k: str(v) for k, v in ports.items()}, "PYTHONUNBUFFERED": "1"}
        env.pop("OPENSEARCH_URL", None)
        self.url = f"http://127.0.0.1:{ports['EVENTPIPE_HTTP_PORT']}"
        self.lines: list[tuple[float, str]] = []
        self.started = time.monotonic()
        self.process = subprocess.Popen([sys.executable, "-m", "eventpipe.cli", "run", "--no-demo", "--data", data,
                                         "--save-every", "0"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append((time.monotonic() - self.started, line))

    def first(self, text: str, timeout_s: float) -> float:
        """Seconds from the start to the first output line holding ``text``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = [at for at, line in list(self.lines) if text in line]
            if found:
                return found[0]
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise SystemExit(f"no {text!r} in the output:\n" + "".join(line for _, line in self.lines[-40:]))

    def first_health_200(self, timeout_s: float = 900) -> float:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/v1/health", timeout=5).status_code == 200:
                    return time.monotonic() - self.started
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise SystemExit(f"no 200 from {self.url}/v1/health in {timeout_s:.0f}s")

    def ctrl_c(self) -> float:
        began = time.monotonic()
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=600)
        return time.monotonic() - began


def bench_restart(events: int) -> None:
    """See the module docstring (--restart)."""
    from eventpipe.generate import generate_events, write_ndjson
    from eventpipe.local.stack import free_port
    from eventpipe.sender import send_file

    with tempfile.TemporaryDirectory() as folder:
        ports = {name: free_port() for name in ("EVENTPIPE_MOTO_PORT", "EVENTPIPE_HTTP_PORT", "EVENTPIPE_SEARCH_PORT")}
        source = os.path.join(folder, "events.ndjson")
        now = int(time.time() * 1000)
        write_ndjson(source, generate_events(events, seed=1, start_ms=now - 2 * 3_600_000, duration_ms=3_600_000))
        data = os.path.join(folder, "data")
        run = StackRun(data, ports)
        run.first("eventpipe local stack is up", 300)
        began = time.monotonic()
        summary = send_file(source, run.url, "demo-key", progress=False)
        print(f"send:    {summary.accepted} of {events} event(s) accepted in {time.monotonic() - began:.1f}s")
        print(f"stop:    Ctrl-C (drain, save) took {run.ctrl_c():.1f}s")
        run = StackRun(data, ports)
        health = run.first_health_200()
        banner = run.first("eventpipe local stack is up", 300)
        print(f"restart: first 200 from /v1/health {health:.1f}s after `eventpipe run` started "
              f"(banner at {banner:.1f}s)")
        caught_up = run.first("search: caught up:", 1800)
        line = next(line for _, line in run.lines if "search: caught up:" in line)
        print(f"search:  caught up {caught_up:.1f}s after the start: {line.split('search: caught up: ', 1)[1].strip()}")
        run.ctrl_c()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--restart", type=int, metavar="EVENTS",
                        help="time a restart of the whole stack after sending this many events instead")
    args = parser.parse_args()
    if args.restart:
        bench_restart(args.restart)
        return
    logging.disable(logging.INFO)
    from moto.server import ThreadedMotoServer

    from eventpipe.local.stack import free_port
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    os.environ["EVENTPIPE_AWS_ENDPOINT_URL"] = url
    from chalicelib.runtime.container import Container
    from chalicelib.runtime.settings import Settings
    from eventpipe.local.bootstrap import bootstrap
    from eventpipe.local.persistence import DataFolder

    container = Container(Settings.from_env())
    bootstrap(container.clients, shards=2)
    s = container.settings
    body = os.urandom(args.size)
    for i in range(args.objects):
        container.clients.s3.put_object(Bucket=s.bucket, Key=f"events/app_id=demo/dt=2026-12-01/hour=00/f{i}.parquet",
                                        Body=body[:-8] + i.to_bytes(8, "big"))
    with tempfile.TemporaryDirectory() as folder:
        data = DataFolder(folder, container.clients.s3, container.clients.dynamodb, s.state_table, s.apps_table)
        print("first save:    ", data.save().describe())
        print("unchanged save:", data.save().describe())
        requests.post(f"{url}/moto-api/reset", timeout=30)
        container = Container(Settings.from_env())
        data = DataFolder(folder, container.clients.s3, container.clients.dynamodb, s.state_table, s.apps_table)
        print("restore:       ", data.restore(data.load(), s.region).describe())
    server.stop()


if __name__ == "__main__":
    main()
