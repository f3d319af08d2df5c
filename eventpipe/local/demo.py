"""``make run``: start the local stack, show it working, run until Ctrl-C."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import requests

from eventpipe.local.stack import Stack, StackConfig

DEMO_FILE = Path("sample_events") / "game_session.json"


def _banner(stack: Stack) -> str:
    c = stack.config
    return "\n".join([
        "",
        "eventpipe local stack is up",
        f"  API           {stack.api_url}   (POST /v1/events, GET /v1/health)",
        f"  AWS (moto)    {stack.moto_url}   (Kinesis {stack.settings.stream_name}, {c.shards} shards; "
        f"S3 {stack.settings.bucket}; DynamoDB; Glue)",
        f"  search        {stack.search_url}   ({'external' if stack.external_search else 'embedded osmem-server'})",
        "  runner        feeding Kinesis to the on_kinesis_record handlers in app.py",
        f"  demo API key  {c.demo_key}   (app {c.demo_app!r}, an operator)",
        f"  dashboard     {stack.api_url}/dashboard#key={c.demo_key}",
        f"  data          {_data_line(stack)}",
        "",
        "try:",
        f"  curl -X POST {stack.api_url}/v1/events -H 'x-api-key: {c.demo_key}' "
        f"-H 'Content-Type: application/json' -d @{DEMO_FILE}",
        "Ctrl-C stops everything" + (" (the API first, then the stream drained and the data saved)."
                                     if c.data_dir else "."),
        "",
    ])


def _data_line(stack: Stack) -> str:
    c = stack.config
    if not c.data_dir:
        return "not kept (no data folder): a restart starts empty"
    saves = f"saved every {c.save_every_s:g}s and on Ctrl-C" if c.save_every_s > 0 else "saved on Ctrl-C"
    if stack.restored is None:
        return f"{c.data_dir}: started empty{' (--fresh)' if c.fresh else ''}; {saves}"
    r = stack.restored
    searched = ", search rebuilt from the archive in the background (the `search:` lines)"
    return (f"{c.data_dir}: restored {r.objects} object(s) ({r.bytes / 1e6:.1f} MB), {r.items} item(s) "
            f"({r.apps} app(s), {r.keys} key(s)) in {r.seconds:.1f}s{searched}; {saves}")


def run_stack(demo: bool = True, data_dir: str | None = None, fresh: bool = False, save_every_s: float = 30.0) -> int:
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    config = StackConfig.from_env()
    config.data_dir, config.fresh, config.save_every_s = data_dir, fresh, save_every_s
    stack = Stack(config)
    try:
        stack.start()
        print(_banner(stack), flush=True)
        if demo and stack.restored is None and DEMO_FILE.exists():  # a restored stack has its data already
            response = requests.post(f"{stack.api_url}/v1/events", data=DEMO_FILE.read_bytes(), timeout=30,
                                     headers={"x-api-key": stack.config.demo_key,
                                              "Content-Type": "application/json"})
            print(f"[stack ] demo: POST {DEMO_FILE} -> {response.status_code} {response.text[:300]}", flush=True)
        while not stopping.wait(1.0):
            problem = stack.check_children()
            if problem:
                print(f"[stack ] {problem}; stopping", flush=True)
                return 1
        return 0
    finally:
        print("[stack ] stopping...", flush=True)
        stack.stop()
