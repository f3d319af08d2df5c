"""The JavaScript SDKs against a local stack on free ports: every event they send must be searchable.

Needs node and npm (not part of `make test`):  .venv/bin/python scripts/js-sdks/check.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from eventpipe.local.stack import Stack, StackConfig, free_port  # noqa: E402

EXPECTED = {  # (event_type, the attributes' metadata that names its protocol)
    ("node_order_completed", "segment"), ("identify", "segment"), ("node_signed_up", "posthog"),
    ("browser_clicked", "posthog"), ("identify", "posthog"), ("browser_order_completed", "segment"),
    ("page", "segment"),
}


def main() -> int:
    if not (HERE / "node_modules").exists():
        subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=HERE, check=True)
    tag = uuid.uuid4().hex[:10]
    config = StackConfig(moto_port=free_port(), http_port=free_port(), search_port=free_port(),
                         project_dir=str(HERE.parent.parent), quiet=True)
    with Stack(config) as stack:
        sent = subprocess.run(["node", "send.cjs"], cwd=HERE, timeout=180,
                              env={**os.environ, "API": stack.api_url, "KEY": config.demo_key, "TAG": tag})
        if sent.returncode:
            return sent.returncode
        deadline = time.monotonic() + 30
        while True:
            hits = requests.get(f"{stack.api_url}/v1/search", params={"q": tag, "size": 100}, timeout=10,
                                headers={"x-api-key": config.demo_key}).json()["hits"]
            found = {(h["event_type"], next(k for k in ("segment", "posthog") if k in h["attributes"])) for h in hits}
            if found >= EXPECTED or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    for event_type, sdk in sorted(found):
        print(f"{sdk:8} {event_type}")
    missing = EXPECTED - found
    print("missing: " + ", ".join(f"{t} ({s})" for t, s in sorted(missing)) if missing else "all JS SDKs delivered")
    return 1 if missing else 0


if __name__ == "__main__":
    raise SystemExit(main())
