"""``eventpipe``: the command-line tool (local stack, apps, data, queries)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from datetime import datetime, timezone

from chalicelib.runtime.settings import Settings
from eventpipe import cli_history, cli_privacy
from eventpipe.cli_args import _aws_settings, _parse_duration_ms, _parse_instant_ms


def cmd_run(args) -> int:
    from eventpipe.local.demo import run_stack
    data = None if args.ephemeral else os.path.abspath(args.data)
    return run_stack(demo=not args.no_demo, data_dir=data, fresh=args.fresh, save_every_s=args.save_every)


def cmd_serve(args) -> int:
    from eventpipe.local.processes import serve_http
    serve_http(args.host, args.port)
    return 0


def cmd_runner(args) -> int:
    from eventpipe.local.processes import run_consumers
    run_consumers(args.poll_interval, args.max_retries, args.schedule_every)
    return 0


def cmd_bootstrap(args) -> int:
    from chalicelib.runtime.clients import Clients
    from eventpipe.local.bootstrap import bootstrap
    if args.aws:  # on AWS the stack creates everything, and the well-known demo key must never exist there
        print("eventpipe bootstrap is for the local stack; on AWS run `eventpipe deploy --stage dev`, then "
              "`eventpipe --aws apps create NAME` for a key", file=sys.stderr)
        return 2
    for line in bootstrap(Clients(_aws_settings(args)), args.shards):
        print(line)
    return 0


def _limit_args(args) -> dict[str, float]:
    """The limits given on the command line (``--events-per-second`` ...), by field name; checked first."""
    from chalicelib.http.errors import BadRequest
    from chalicelib.apps.ratelimit import LIMIT_FIELDS, valid_limit
    limits = {name: getattr(args, name) for name in LIMIT_FIELDS if getattr(args, name, None) is not None}
    for name, value in limits.items():
        if not valid_limit(value):
            raise BadRequest(f"--{name.replace('_', '-')} must be a number from 0.001 to 1e12, got {value:g}")
    return limits


def _describe_limits(settings: Settings, own: dict[str, float]) -> str:
    from chalicelib.apps.ratelimit import Limits
    limits = Limits.merged(Limits(settings.rate_events_per_second, settings.rate_requests_per_second,
                                  settings.rate_burst_seconds), own)
    return limits.describe() + ("" if own else " (the defaults)")


def cmd_apps(args) -> int:
    from chalicelib.http.errors import BadRequest
    from chalicelib.apps.keys import AppStore
    from chalicelib.runtime.clients import Clients
    settings = _aws_settings(args)
    store = AppStore(Clients(settings).dynamodb, settings.apps_table)
    try:
        if args.apps_command == "create":
            limits = _limit_args(args)
            key = store.create_key(args.name, operator=args.operator)
            own = store.set_limits(args.name, limits) if limits else store.own_limits(args.name)
            role = " (operator: sees the stream-wide pipeline figures)" if args.operator else ""
            print(f"app {args.name}{role}: new API key (shown once, stored hashed):\n{key}")
            print(f"rate limits: {_describe_limits(settings, own)}")
        elif args.apps_command == "limits":
            limits = _limit_args(args)
            if limits and args.name not in store.list_apps():
                print(f"no app {args.name!r} (create it with `eventpipe apps create {args.name}`)", file=sys.stderr)
                return 2
            own = store.set_limits(args.name, limits) if limits else store.own_limits(args.name)
            print(f"{args.name}\t{_describe_limits(settings, own)}")
        elif args.apps_command == "pseudonymise":
            from chalicelib.ingest.pseudonymise import check_fields
            try:
                fields = check_fields(args.field)
            except ValueError as exc:
                print(exc, file=sys.stderr)
                return 2
            if args.field or args.off:
                store.set_pseudonymisation(args.name, [] if args.off else fields)
            config = store.pseudonymisation(args.name)
            print(f"{args.name}\tpseudonymised at ingest: {', '.join(config[0]) if config else 'nothing'}")
        elif args.apps_command == "session-gap":
            if args.minutes is not None:
                if args.name not in store.list_apps():
                    print(f"no app {args.name!r} (create it with `eventpipe apps create {args.name}`)",
                          file=sys.stderr)
                    return 2
                store.set_session_gap(args.name, args.minutes)
            own = store.session_gap_minutes(args.name)
            print(f"{args.name}\tsession gap {own if own is not None else 30.0:g} min"
                  + ("" if own is not None else " (the default)"))
        else:
            own_limits = store.all_limits()
            for app_id, keys in sorted(store.list_apps().items()):
                print(f"{app_id}\t{keys} key(s)\t{_describe_limits(settings, own_limits.get(app_id, {}))}")
    except BadRequest as exc:
        print(exc.message, file=sys.stderr)
        return 2
    return 0


def _add_limit_options(parser) -> None:
    parser.add_argument("--events-per-second", type=float, help="sustained events/s (all routes that ingest)")
    parser.add_argument("--requests-per-second", type=float, help="sustained requests/s (every route with a key)")
    parser.add_argument("--burst-seconds", type=float, help="a burst may use this many seconds of each rate")


def cmd_generate(args) -> int:
    from eventpipe.generate import generate_events, write_ndjson
    if args.start is not None:
        start_ms = args.start
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
    from eventpipe.sender import send_file
    summary = send_file(args.file, args.url, args.key, args.batch_size, args.gzip, args.concurrency,
                        progress=not args.no_progress)
    print(summary.describe())
    return 0 if summary.failed_requests == 0 else 1


def cmd_quicksight(args) -> int:
    from chalicelib.runtime.clients import Clients
    from eventpipe.query.quicksight import setup
    clients = Clients(_aws_settings(args))
    account_id = args.aws_account_id or clients.client("sts").get_caller_identity()["Account"]
    for line in setup(clients.client("quicksight"), account_id, workgroup=args.workgroup,
                      principal_arn=args.principal_arn, app_id=args.app_id,
                      database=clients.settings.glue_database):
        print(line)
    return 0


def cmd_query(args) -> int:
    from chalicelib.runtime.clients import Clients
    from eventpipe.query.local_engine import QueryError
    from eventpipe.query.service import QueryService, format_result, parse_param
    if args.aws and args.engine not in (None, "athena"):
        print(f"query: --aws runs on Athena, not on {args.engine} (which reads the local stack)", file=sys.stderr)
        return 2
    engine = args.engine or ("athena" if args.aws else "duckdb")
    args.aws = engine == "athena"
    try:
        parsed = [parse_param(text) for text in args.param]
        with QueryService(Clients(_aws_settings(args))) as service:
            result = service.run(args.sql, args.file, {n: v for n, _, v in parsed},
                                 {n: t for n, t, _ in parsed if t}, api_key=args.key, engine=engine)
    except QueryError as exc:
        print(f"query: {exc}", file=sys.stderr)
        return 2
    print(format_result(result.table, args.format))
    return 0


def _deploy_clients(args):
    import boto3

    from eventpipe.deploy.commands import DeployClients
    return DeployClients.from_session(boto3.session.Session(region_name=args.region),
                                      endpoint_url=args.endpoint_url)


def _check_credentials(clients, command: str) -> bool:
    """Fail fast, with a clear message, before building anything, when AWS cannot be reached."""
    from botocore.exceptions import BotoCoreError, ClientError
    try:
        identity = clients.sts.get_caller_identity()
    except (BotoCoreError, ClientError) as exc:
        print(f"{command}: AWS is not reachable with the current credentials ({type(exc).__name__}: {exc}); "
              "set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY and AWS_REGION", file=sys.stderr)
        return False
    print(f"{command}: account {identity['Account']}, region {clients.region}", file=sys.stderr)
    return True


def cmd_deploy(args) -> int:
    from pathlib import Path

    from eventpipe.deploy.artifacts import build_artifacts
    from eventpipe.deploy.commands import DeployError, deploy
    project = Path(__file__).resolve().parents[1]
    clients = _deploy_clients(args)
    if not _check_credentials(clients, "deploy"):
        return 2
    try:
        artifacts = build_artifacts(project / "build" / "artifacts" / args.stage)
        deploy(args.stage, clients, project, artifacts.deploy_files())
    except DeployError as exc:
        print(f"deploy: {exc}", file=sys.stderr)
        return 1
    print("next: `eventpipe --aws apps create NAME` prints an API key (no key exists until you make one)")
    return 0


def cmd_destroy(args) -> int:
    from eventpipe.deploy.commands import DeployError, destroy
    clients = _deploy_clients(args)
    if not _check_credentials(clients, "destroy"):
        return 2
    try:
        destroy(args.stage, clients)
    except DeployError as exc:
        print(f"destroy: {exc}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eventpipe", description=__doc__)
    parser.add_argument("--aws", action="store_true", help="use real AWS instead of the local stack")
    sub = parser.add_subparsers(dest="command", required=True)

    from eventpipe.local.environment import environment_help
    p = sub.add_parser("run", help="start the whole local stack (moto, API, runner) and show it working",
                       epilog=environment_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--no-demo", action="store_true", help="do not post the demo events")
    p.add_argument("--data", default=os.environ.get("EVENTPIPE_DATA_DIR") or os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".eventpipe-data"),
        help="keep S3 and DynamoDB here across restarts (default: .eventpipe-data in the project)")
    p.add_argument("--fresh", action="store_true", help="start empty: forget what the data folder holds")
    p.add_argument("--save-every", type=float, default=30.0, metavar="SECONDS",
                   help="save the data this often too, not only on Ctrl-C (0: only on Ctrl-C)")
    p.add_argument("--ephemeral", action="store_true", help="keep nothing (no data folder)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("serve", help="serve the HTTP API (local stack child)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("runner", help="feed Kinesis to the handlers like Lambda's event source mapping")
    p.add_argument("--poll-interval", type=float, default=0.2)
    p.add_argument("--max-retries", type=int, default=None,
                   help="override the consumers' maximum_retry_attempts (default: chalicelib/pipeline.toml)")
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
    _add_limit_options(create)
    create.add_argument("--operator", action="store_true",
                        help="mark the app as an operator: its keys see the stream-wide figures of GET /v1/pipeline")
    limits = apps.add_parser("limits", help="show an app's rate limits, or change some of them")
    limits.add_argument("name")
    _add_limit_options(limits)
    apps.add_parser("list", help="list apps, their number of keys and their rate limits")
    pseudo = apps.add_parser("pseudonymise", help="show, set or stop the fields replaced by a keyed hash at ingest "
                                                  "(HMAC-SHA256 with the app's secret)")
    pseudo.add_argument("name")
    pseudo.add_argument("--field", action="append", default=[], help="user_id or attributes.<name> (repeatable; "
                                                                     "replaces the app's list)")
    pseudo.add_argument("--off", action="store_true", help="pseudonymise nothing from now on")
    gap = apps.add_parser("session-gap", help="show an app's session inactivity gap, or set it (sessions table)")
    gap.add_argument("name")
    gap.add_argument("minutes", type=float, nargs="?", help="1 to 1440 (default 30)")
    p.set_defaults(func=cmd_apps)

    p = sub.add_parser("generate", help="write reproducible synthetic game + GPS events as NDJSON")
    p.add_argument("--events", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--start", type=_parse_instant_ms, help="ISO-8601 time with a zone of the first event (default: the previous whole hour)")
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

    cli_history.add_parsers(sub)
    cli_privacy.add_parsers(sub)

    for name, func, text in (("deploy", cmd_deploy, "build the artifacts, package, create or update the stack"),
                             ("destroy", cmd_destroy, "delete the stage's stack (prod keeps its data)")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--stage", required=True, choices=["dev", "prod"])
        p.add_argument("--region", default=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
                       or "us-east-1")
        p.add_argument("--endpoint-url", default=None, help=argparse.SUPPRESS)  # tests: moto server
        p.set_defaults(func=func)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    logging.getLogger("botocore").setLevel(logging.WARNING)
    # opensearch-py logs every failed request with its traceback, a busy server's timeout included; the callers
    # say what failed themselves (the indexer retries or halves the bulk, a search answers 503, health "down").
    logging.getLogger("opensearch").setLevel(logging.ERROR)
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
