"""``eventpipe``: the command-line tool (local stack, apps, data, queries)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from datetime import datetime, timezone

from chalicelib.config import Settings


def _aws_settings(args) -> Settings:
    """Settings for commands that talk to AWS: the local stack unless --aws."""
    if not args.aws and not os.environ.get("EVENTPIPE_AWS_ENDPOINT_URL"):
        os.environ["EVENTPIPE_AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{os.environ.get('EVENTPIPE_MOTO_PORT', '5000')}"
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    return Settings.from_env()


def cmd_run(args) -> int:
    from chalicelib.local.demo import run_stack
    return run_stack(demo=not args.no_demo)


def cmd_serve(args) -> int:
    from chalicelib.local.processes import serve_http
    serve_http(args.host, args.port)
    return 0


def cmd_runner(args) -> int:
    from chalicelib.local.processes import run_consumers
    run_consumers(args.poll_interval, args.max_retries, args.schedule_every)
    return 0


def cmd_bootstrap(args) -> int:
    from chalicelib.clients import Clients
    from chalicelib.local.bootstrap import bootstrap
    for line in bootstrap(Clients(_aws_settings(args)), args.shards):
        print(line)
    return 0


def cmd_apps(args) -> int:
    from chalicelib.apps import AppStore
    from chalicelib.clients import Clients
    settings = _aws_settings(args)
    store = AppStore(Clients(settings).dynamodb, settings.apps_table)
    if args.apps_command == "create":
        key = store.create_key(args.name)
        print(f"app {args.name}: new API key (shown once, stored hashed):\n{key}")
    else:
        for app_id, keys in sorted(store.list_apps().items()):
            print(f"{app_id}\t{keys} key(s)")
    return 0


def _parse_duration_ms(text: str) -> int:
    units = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
    if text[-1:] in units and text[:-1].isdigit():
        return int(text[:-1]) * units[text[-1]]
    raise argparse.ArgumentTypeError(f"duration {text!r}: use a number with s, m, h or d (e.g. 1h)")


def cmd_generate(args) -> int:
    from chalicelib.generate import generate_events, write_ndjson
    if args.start:
        start_ms = int(datetime.fromisoformat(args.start).timestamp() * 1000)
    else:  # the previous whole hour: recent enough for search and the metrics API
        start_ms = (int(time.time()) // 3600 - 1) * 3_600_000
    events = generate_events(args.events, args.seed, start_ms, args.duration, args.users)
    if args.output == "-":
        import orjson
        for event in events:
            sys.stdout.buffer.write(orjson.dumps(event) + b"\n")
        return 0
    written = write_ndjson(args.output, events)
    print(f"wrote {written} events to {args.output} (seed {args.seed}, start "
          f"{datetime.fromtimestamp(start_ms / 1000, timezone.utc).isoformat()})", file=sys.stderr)
    return 0


def cmd_send(args) -> int:
    from chalicelib.sender import send_file
    summary = send_file(args.file, args.url, args.key, args.batch_size, args.gzip, args.concurrency,
                        progress=not args.no_progress)
    print(summary.describe())
    return 0 if summary.failed_requests == 0 else 1


def cmd_quicksight(args) -> int:
    from chalicelib.clients import Clients
    from chalicelib.quicksight import setup
    clients = Clients(_aws_settings(args))
    account_id = args.aws_account_id or clients.client("sts").get_caller_identity()["Account"]
    for line in setup(clients.client("quicksight"), account_id, workgroup=args.workgroup,
                      principal_arn=args.principal_arn, app_id=args.app_id,
                      database=clients.settings.glue_database):
        print(line)
    return 0


def cmd_query(args) -> int:
    from chalicelib.clients import Clients
    from chalicelib.query.local_engine import QueryError
    from chalicelib.query.service import QueryService, format_result, parse_param
    if args.aws and args.engine not in (None, "athena"):
        print(f"query: --aws runs on Athena, not on {args.engine} (which reads the local stack)", file=sys.stderr)
        return 2
    engine = args.engine or ("athena" if args.aws else "duckdb")
    args.aws = engine == "athena"
    try:
        parsed = [parse_param(text) for text in args.param]
        result = QueryService(Clients(_aws_settings(args))).run(
            args.sql, args.file, {n: v for n, _, v in parsed}, {n: t for n, t, _ in parsed if t},
            api_key=args.key, engine=engine)
    except QueryError as exc:
        print(f"query: {exc}", file=sys.stderr)
        return 2
    print(format_result(result.table, args.format))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eventpipe", description=__doc__)
    parser.add_argument("--aws", action="store_true", help="use real AWS instead of the local stack")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="start the whole local stack (moto, API, runner) and show it working")
    p.add_argument("--no-demo", action="store_true", help="do not post the demo events")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("serve", help="serve the HTTP API (local stack child)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("runner", help="feed Kinesis to the handlers like Lambda's event source mapping")
    p.add_argument("--poll-interval", type=float, default=0.2)
    p.add_argument("--max-retries", type=int, default=10)
    p.add_argument("--schedule-every", type=float,
                   default=float(os.environ.get("EVENTPIPE_SCHEDULE_SECONDS", "0")) or None,
                   help="run every @app.schedule handler this often (seconds) instead of its rate")
    p.set_defaults(func=cmd_runner)

    p = sub.add_parser("bootstrap", help="create the stream, tables, bucket and Glue database")
    p.add_argument("--shards", type=int, default=2)
    p.set_defaults(func=cmd_bootstrap)

    p = sub.add_parser("apps", help="manage applications and API keys")
    apps = p.add_subparsers(dest="apps_command", required=True)
    create = apps.add_parser("create", help="create an app (or another key for it) and print the key")
    create.add_argument("name")
    apps.add_parser("list", help="list apps and their number of keys")
    p.set_defaults(func=cmd_apps)

    p = sub.add_parser("generate", help="write reproducible synthetic game + GPS events as NDJSON")
    p.add_argument("--events", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--start", help="ISO-8601 time of the first event (default: the previous whole hour)")
    p.add_argument("--duration", type=_parse_duration_ms, default=3_600_000, help="time span, e.g. 1h")
    p.add_argument("--users", type=int, default=500)
    p.add_argument("-o", "--output", default="-")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("send", help="POST an NDJSON file to /v1/events in batches")
    p.add_argument("file")
    p.add_argument("--url", default=f"http://127.0.0.1:{os.environ.get('EVENTPIPE_HTTP_PORT', '8000')}")
    p.add_argument("--key", default=os.environ.get("EVENTPIPE_API_KEY", "demo-key"))
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--gzip", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_send)

    p = sub.add_parser("quicksight", help="QuickSight over the Athena views")
    qs = p.add_subparsers(dest="quicksight_command", required=True)
    qs_setup = qs.add_parser("setup", help="create or update the Athena data source, data sets and dashboard")
    qs_setup.add_argument("--aws-account-id", help="default: the caller's account (STS)")
    qs_setup.add_argument("--principal-arn", help="QuickSight user or group ARN to own the resources")
    qs_setup.add_argument("--workgroup", default="primary", help="Athena workgroup")
    qs_setup.add_argument("--app-id", help="data sets and dashboard restricted to this app's rows")
    p.set_defaults(func=cmd_quicksight)

    p = sub.add_parser("query", help="run Athena SQL or a named query of sql/queries (local stack: DuckDB, "
                                     "or Trino with --engine trino)")
    p.add_argument("sql", nargs="?", help="the SQL text (or use --file)")
    p.add_argument("--file", help="a .sql file, or the name of a query in sql/queries (e.g. top_users)")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="bind :NAME (repeatable)")
    p.add_argument("--key", help="an app's API key: query only that app (forces app_id)")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.add_argument("--aws", action="store_true", default=argparse.SUPPRESS, help="run on Athena")
    p.add_argument("--engine", choices=["duckdb", "trino", "athena"],
                   help="duckdb (default on the local stack: translated with sqlglot), trino (unmodified, on "
                        "the local Trino node of scripts/trino-node.sh, at $TRINO_URL), athena (same as --aws)")
    p.set_defaults(func=cmd_query)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    logging.getLogger("botocore").setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
