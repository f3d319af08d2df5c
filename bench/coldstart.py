"""Cold start of every Lambda function, run from its artifacts (target: the API <= 300 ms).

For each function, ``--repeats`` fresh interpreters (``python3.12 -I -S -B``, the
function's unpacked code zip and layers only, see eventpipe/deploy/sandbox.py) each
import app.py (Lambda's init phase) and serve one first invocation against moto
server and osmem-server: the API a POST /v1/events of ``--events`` events, the
Kinesis consumers the records that POST stored, the schedules a scheduled event.
Medians are printed, and the best run ("best": what the code costs when nothing
else competes for the CPU); "import + first" is what a caller of a cold function
waits for, beyond the runtime's own start; "process" is the whole interpreter's life.

With ``--snapstart`` the API is also measured as Lambda SnapStart runs it: the init (import
+ the before-snapshot hook) in one process, then, in a fork of it (the memory image a restore
resumes, in a fresh process), the after-restore hook + the first POST; "restore + first" is
what remains for a caller beyond Lambda's own snapshot restore (not measurable here: it loads
the image's pages from Lambda's snapshot cache).

    .venv/bin/python bench/coldstart.py [--repeats 7] [--events 20] [--snapstart]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chalicelib.runtime.clients import Clients  # noqa: E402
from chalicelib.runtime.settings import Settings  # noqa: E402
from eventpipe.generate import generate_events  # noqa: E402
from eventpipe.local.bootstrap import bootstrap  # noqa: E402
from eventpipe.deploy import lambda_events as events  # noqa: E402
from eventpipe.deploy.artifacts import build_artifacts  # noqa: E402
from eventpipe.deploy.sandbox import Sandbox, chalice_environment, local_services  # noqa: E402

API_TARGET_MS = 300
HEAVY = ("pyarrow", "numpy", "duckdb")


def _post(count: int) -> dict:
    start_ms = (int(time.time()) // 3600 - 2) * 3_600_000
    body = orjson.dumps({"events": list(generate_events(count, seed=7, start_ms=start_ms))})
    return events.api_event("POST", "/v1/events", body=body,
                            headers={"x-api-key": "demo-key", "Content-Type": "application/json"})


def measure(sandbox: Sandbox, function: str, event: dict, repeats: int) -> dict:
    runs = [sandbox.run(function, [event]) for _ in range(repeats)]
    for run in runs:
        run.results()  # raises with the traceback if the handler failed
    init = [r.response["init_ms"] for r in runs]
    first = [r.response["invocations"][0]["duration_ms"] for r in runs]
    totals = [i + f for i, f in zip(init, first)]
    return {"import": statistics.median(init), "first": statistics.median(first),
            "total": statistics.median(totals), "best": min(totals),
            "process": statistics.median(r.wall_ms for r in runs),
            "heavy": sorted(set(HEAVY) & set(runs[0].response["invocations"][0]["modules"]))}


def measure_snapstart(sandbox: Sandbox, event: dict, repeats: int) -> dict:
    runs = [sandbox.run("api_handler", [event], snapstart=True) for _ in range(repeats)]
    for run in runs:
        run.results()
        if run.response.get("hooks") != {"before": 1, "after": 1}:
            raise AssertionError(f"the API registered hooks {run.response.get('hooks')}, expected one of each")
    init = [r.response["init_ms"] + r.response["before_snapshot_ms"] for r in runs]
    restore = [r.response["after_restore_ms"] for r in runs]
    first = [r.response["invocations"][0]["duration_ms"] for r in runs]
    totals = [a + b for a, b in zip(restore, first)]
    return {"init": statistics.median(init), "before": statistics.median(r.response["before_snapshot_ms"]
                                                                      for r in runs),
            "restore": statistics.median(restore), "first": statistics.median(first),
            "total": statistics.median(totals), "best": min(totals)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--snapstart", action="store_true", help="also the API restored from a SnapStart snapshot")
    parser.add_argument("--api-only", action="store_true", help="only the API function")
    args = parser.parse_args()
    artifacts = build_artifacts(ROOT / "build" / "artifacts", check=False)
    with local_services() as services, tempfile.TemporaryDirectory() as tmp:
        env = {**chalice_environment(), "EVENTPIPE_AWS_ENDPOINT_URL": services.moto_url,
               "OPENSEARCH_URL": services.search_url, "EVENTPIPE_SEARCH_REPLICAS": "0"}
        settings = Settings.from_env({**env, "AWS_REGION": "us-east-1"})
        clients = Clients(settings)
        bootstrap(clients)
        sandbox = Sandbox.create(artifacts, Path(tmp), env)
        for function in artifacts.functions:
            sandbox.dirs(function)  # unpack outside the timings
        rows = {"api_handler": measure(sandbox, "api_handler", _post(args.events), args.repeats)}
        snap = measure_snapstart(sandbox, _post(args.events), args.repeats) if args.snapstart else None
        (batch, *_) = [e for e in events.kinesis_events(clients.kinesis, settings.stream_name) if e["Records"]]
        for function, spec in artifacts.functions.items():
            if function != "api_handler" and not args.api_only:
                event = batch if spec.kind == "kinesis" else events.scheduled_event(function)
                rows[function] = measure(sandbox, function, event, args.repeats)
    print(f"cold starts from the {artifacts.runtime} artifacts, median of {args.repeats} fresh interpreters (ms)")
    print(f"{'function':<18}{'layers':<22}{'import':>8}{'first':>8}{'import+first':>14}{'best':>7}{'process':>9}"
          "  heavy modules")
    for function, row in rows.items():
        layers = ",".join(artifacts.functions[function].layers) or "-"
        print(f"{function:<18}{layers:<22}{row['import']:>8.0f}{row['first']:>8.0f}{row['total']:>14.0f}"
              f"{row['best']:>7.0f}{row['process']:>9.0f}  {','.join(row['heavy']) or '-'}")
    api = rows["api_handler"]
    print(f"API import + first POST: median {api['total']:.0f} ms, best {api['best']:.0f} ms (target <= "
          f"{API_TARGET_MS} ms: {'met' if api['total'] <= API_TARGET_MS else 'NOT met'}); "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    if snap:
        print(f"API with SnapStart, median of {args.repeats}: init before the snapshot {snap['init']:.0f} ms "
              f"(of which the before-snapshot hook {snap['before']:.0f} ms); after a restore: after-restore hook "
              f"{snap['restore']:.1f} ms + first POST {snap['first']:.0f} ms = {snap['total']:.0f} ms "
              f"(best {snap['best']:.0f} ms; target <= {API_TARGET_MS} ms: "
              f"{'met' if snap['total'] <= API_TARGET_MS else 'NOT met'}), plus Lambda's own restore")
    return 0


if __name__ == "__main__":
    sys.exit(main())
