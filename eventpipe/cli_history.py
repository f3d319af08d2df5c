"""``eventpipe redrive | replay | backfill | lake``: the lake's history (failed batches, search rebuilds,
recomputed finals, the raw table's migration and commits)."""

from __future__ import annotations

import argparse
import os
import sys

from eventpipe.cli_args import _aws_settings, _parse_instant_ms


def cmd_redrive(args) -> int:
    from chalicelib.runtime.clients import Clients
    from eventpipe.ops.redrive import QUEUE_CONSUMERS, aws_redriver, local_redriver, queue_redriver
    settings = _aws_settings(args)
    if args.aws:
        clients = Clients(settings)
        arn = clients.kinesis.describe_stream_summary(StreamName=settings.stream_name)["StreamDescriptionSummary"]
        redriver = aws_redriver(clients, arn["StreamARN"])
    else:
        from eventpipe.local.processes import _import_app, _stream_arn
        module = _import_app()
        redriver = local_redriver(module, _stream_arn(module.container))
    outcomes = []
    if args.consumer is None or args.consumer not in QUEUE_CONSUMERS:
        outcomes += redriver.run(consumer=args.consumer, dry_run=args.dry_run, keep=args.keep)
    if args.consumer is None or args.consumer in QUEUE_CONSUMERS:  # the finalize-units dead-letter queue
        sqs = Clients(settings).sqs if args.aws else module.container.clients.sqs
        outcomes += queue_redriver(sqs, settings.finalize_queue).run(dry_run=args.dry_run)
    for outcome in outcomes:
        print(f"{outcome.result}\t{outcome.consumer or '-'}\t{outcome.records} record(s)\t{outcome.key}")
    failed = [o for o in outcomes if o.result.startswith("failed")]
    print(f"redrive: {sum(o.result == 'replayed' for o in outcomes)} replayed, {len(failed)} failed, "
          f"{sum(o.result.startswith('skipped') for o in outcomes)} skipped", file=sys.stderr)
    return 1 if failed else 0


def cmd_lake(args) -> int:
    """``eventpipe lake migrate|commit``: the raw events table's one-off and scheduled work, run now."""
    import json

    from chalicelib.runtime.container import Container
    container = Container(_aws_settings(args))
    if args.lake_command == "migrate":
        from eventpipe.ops.migrate import Migration
        report = Migration(container.clients.s3, container.settings.bucket, container.raw_table).run(
            dry_run=args.dry_run)
        print(report.describe())
        return 0
    if args.lake_command == "status":
        return _lake_status(container)
    print(json.dumps(container.raw_table_job.run(), indent=2))  # commit: what the commit_events schedule does
    return 0


def _queue_status(container) -> None:
    """The finalize-units queue: units waiting and in flight, and the dead letters (``eventpipe redrive``)."""
    from botocore.exceptions import ClientError

    from chalicelib.lake.unit_queue import UnitQueue

    sqs, name = container.clients.sqs, container.settings.finalize_queue
    try:
        queue = UnitQueue(sqs, sqs.get_queue_url(QueueName=name)["QueueUrl"]).depth()
        dead = UnitQueue(sqs, sqs.get_queue_url(QueueName=f"{name}-dlq")["QueueUrl"]).depth()
    except ClientError as exc:
        print(f"finalize units: queue {name} unavailable ({exc.response['Error'].get('Code')})")
        return
    print(f"finalize units ({name}): {queue['visible']} waiting, {queue['in_flight']} in flight; "
          f"dead letters: {dead['visible'] + dead['in_flight']} (eventpipe redrive --consumer finalize_worker)")


def _lake_status(container) -> int:
    """Staged files waiting, the table's partitions (files, rows) and its newest snapshots."""
    from chalicelib.lake import layout, s3io
    from chalicelib.stream.instants import ms_to_iso

    s = container.settings
    staged = list(s3io.list_keys(container.clients.s3, s.bucket, layout.STAGING_PREFIX))
    print(f"staged: {len(staged)} file(s), {sum(o['Size'] for o in staged):,} bytes (committed by commit_events)")
    _queue_status(container)
    partitions = container.raw_table.partitions()
    print(f"table {s.glue_database}.events: {len(partitions)} partition(s)")
    for (app_id, dt, hour), files in sorted(partitions.items()):
        print(f"  app_id={app_id} dt={dt} hour={hour}: {len(files)} file(s), "
              f"{sum(f['record_count'] for f in files):,} row(s), {sum(f['file_size_in_bytes'] for f in files):,} bytes")
    snapshots = container.raw_table.table().snapshots()
    print(f"snapshots: {len(snapshots)} (newest last)")
    for snap in snapshots[-10:]:
        extra = {k: v for k, v in (snap.summary._additional_properties if snap.summary else {}).items()
                 if k.startswith("eventpipe.") or k in ("added-data-files", "deleted-data-files", "added-records")}
        print(f"  {ms_to_iso(snap.timestamp_ms)} {snap.summary.operation.value if snap.summary else '?'} {extra}")
    return 0


def cmd_replay(args) -> int:
    from chalicelib.runtime.container import Container
    from chalicelib.search.errors import SearchUnavailableError
    from eventpipe.ops.replay import replayer_for
    if not args.aws:  # the local stack's search server, unless OPENSEARCH_URL names another
        os.environ.setdefault("OPENSEARCH_URL", f"http://127.0.0.1:{os.environ.get('EVENTPIPE_SEARCH_PORT', '9200')}")
    elif args.stage:  # the deployed stage's bucket and domain, from its stack outputs (explicit variables win)
        from chalicelib.runtime.clients import Clients
        from eventpipe.ops.replay import stage_environment
        cloudformation = Clients(_aws_settings(args)).client("cloudformation")
        for name, value in stage_environment(cloudformation, f"eventpipe-{args.stage}").items():
            os.environ.setdefault(name, value)
    settings = _aws_settings(args)
    if not settings.opensearch_url:
        print("replay: no search endpoint: set OPENSEARCH_URL (and EVENTPIPE_OPENSEARCH_SIGV4=es) as the deployed "
              "functions have them (the stack output SearchEndpoint)", file=sys.stderr)
        return 2
    if args.to <= args.from_:
        print("replay: --to must be after --from", file=sys.stderr)
        return 2
    try:
        replayer = replayer_for(Container(settings))
    except SearchUnavailableError as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 1
    summary = replayer.run(args.from_, args.to, args.app or None, progress=not args.no_progress)
    print(summary.describe())
    return 0 if summary.ok else 1


def cmd_backfill(args) -> int:
    from chalicelib.processing import load_metrics
    from eventpipe.ops import backfill
    metrics = load_metrics()
    try:
        partitions = backfill.plan(metrics, None if args.all else args.metric, args.start, args.end)
    except backfill.BackfillError as exc:
        print(f"backfill: {exc}", file=sys.stderr)
        return 2
    if args.aws:
        import boto3

        from chalicelib.runtime.pipeline_config import load_pipeline_config
        from eventpipe.deploy.naming import StageNames
        function = StageNames(load_pipeline_config(args.stage).deploy.app_name, args.stage).function("finalize_windows")
        runner = backfill.aws_runner(boto3.client("lambda", region_name=args.region), function)
    else:
        from chalicelib.runtime.container import Container
        runner = backfill.local_runner(Container(_aws_settings(args)).finalizer, metrics)
    summary = backfill.run(partitions, runner, concurrency=args.concurrency, progress=not args.no_progress)
    print(summary.describe())
    return 1 if summary.failed else 0


def add_parsers(sub) -> None:
    """The history subcommands (redrive, replay, backfill, lake), on the main parser's subparsers."""
    p = sub.add_parser("redrive", help="replay the batches Lambda gave up on (aws/lambda/ in the lake bucket) and "
                                       "move the finalize-units dead letters back to their queue")
    p.add_argument("--consumer", help="only this consumer (archive_events, aggregate_events, index_events, "
                                      "finalize_worker)")
    p.add_argument("--dry-run", action="store_true", help="list what would be replayed")
    p.add_argument("--keep", action="store_true", help="leave replayed records in place (default: move them "
                                                        "to aws/lambda-redriven/)")
    p.set_defaults(func=cmd_redrive)

    p = sub.add_parser("replay", help="re-feed the raw archive to the search indexer (rebuild a deleted index)")
    p.add_argument("--from", dest="from_", metavar="FROM", required=True, type=_parse_instant_ms,
                   help="ISO-8601 with a zone")
    p.add_argument("--to", required=True, type=_parse_instant_ms, help="ISO-8601 with a zone (excluded)")
    p.add_argument("--app", action="append", default=[], help="only this app (repeatable; default: every app)")
    p.add_argument("--stage", choices=["dev", "prod"], help="with --aws: the bucket and search domain of this "
                                                              "stage's stack (its outputs)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("backfill", help="recompute a metric's final windows for [--from, --to) from the raw archive "
                                        "(a new metric's history, or a changed definition's)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--metric", action="append", help="a metric of metrics.yaml (repeatable)")
    which.add_argument("--all", action="store_true", help="every metric")
    p.add_argument("--from", dest="start", required=True, type=_parse_instant_ms, help="ISO-8601 or epoch ms")
    p.add_argument("--to", dest="end", required=True, type=_parse_instant_ms, help="ISO-8601 or epoch ms (exclusive)")
    p.add_argument("--concurrency", type=int, default=1, help="--aws: invocations at once (default 1: the "
                                                                 "function's reserved concurrency)")
    p.add_argument("--stage", default="dev", choices=["dev", "prod"], help="--aws: the deployed stage")
    p.add_argument("--region", default=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
                   or "us-east-1", help=argparse.SUPPRESS)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_backfill)

    p = sub.add_parser("lake", help="the raw events Iceberg table: migrate the old archive, or commit now")
    lake = p.add_subparsers(dest="lake_command", required=True)
    migrate = lake.add_parser("migrate", help="append the Hive-layout archive under events/ to the raw events "
                                              "table, then delete the migrated files (safe to re-run)")
    migrate.add_argument("--dry-run", action="store_true", help="count what would be migrated")
    lake.add_parser("commit", help="run the commit_events schedule once: commit staged batches, compact closed "
                                   "hours, expire snapshots, delete unreferenced files")
    lake.add_parser("status", help="staged files, the table's partitions (files, rows) and its newest snapshots")
    p.set_defaults(func=cmd_lake)
