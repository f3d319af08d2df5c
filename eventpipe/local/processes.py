"""Entry points of the local stack's child processes: the HTTP API and the runner."""

from __future__ import annotations

import importlib
import json
import logging
import os
import signal
import sys
import threading


log = logging.getLogger("eventpipe.local")


def _import_app():
    """Import app.py from the project root (the current directory)."""
    sys.path.insert(0, os.getcwd())
    return importlib.import_module("app")


def _stop_on_signals(stop) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop())


def serve_http(host: str, port: int) -> None:
    """Serve the Chalice app's routes, as ``chalice local --no-autoreload`` does."""
    from chalice.config import Config
    from chalice.local import ChaliceRequestHandler, LocalDevServer

    class Handler(ChaliceRequestHandler):
        # http.server answers 501 to a method without a do_ method; the gateway answers 405 (as for PUT).
        do_TRACE = do_QUERY = do_CONNECT = ChaliceRequestHandler._generic_handle
        # Chalice writes the headers and the body in two sends on a keep-alive (HTTP/1.1) connection: with
        # Nagle's algorithm the body waits for the client's delayed ACK of the headers, ~40 ms per answer.
        disable_nagle_algorithm = True

    module = _import_app()
    config = Config.create(chalice_stage="local", app_name=module.app.app_name, project_dir=os.getcwd())
    server = LocalDevServer(module.app, config, host, port, handler_cls=Handler)
    _stop_on_signals(lambda: threading.Thread(target=server.shutdown, daemon=True).start())
    log.info("api: serving http://%s:%d", host, port)
    server.server.serve_forever(poll_interval=0.2)


def s3_dead_letter(s3, bucket: str, stream_arn: str, region: str):
    """Lambda's on-failure destination, locally: the same record, at the same kind of key, as Lambda writes."""
    from datetime import datetime, timezone

    from eventpipe.ops import failures

    def write(consumer: str, shard_id: str, records: list[dict], reason: str) -> None:
        condition = "RecordAgeExceeded" if reason == "RecordAgeExceeded" else "RetryAttemptsExhausted"
        key, body = failures.build(
            records, mapping_uuid=failures.local_mapping_uuid(stream_arn, consumer), shard_id=shard_id,
            stream_arn=stream_arn, function_arn=f"arn:aws:lambda:{region}:000000000000:function:{consumer}",
            condition=condition, invoke_count=0 if condition == "RecordAgeExceeded" else 1,
            error=None if condition == "RecordAgeExceeded" else reason, now=datetime.now(timezone.utc))
        s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")
        log.error("dead letter: %s %s, %d record(s) -> s3://%s/%s (%s)", consumer, shard_id, len(records), bucket,
                  key, reason)

    return write


def _stream_arn(container) -> str:
    summary = container.clients.kinesis.describe_stream_summary(StreamName=container.settings.stream_name)
    return summary["StreamDescriptionSummary"]["StreamARN"]


def run_consumers(poll_interval_s: float = 0.2, max_retries: int | None = None,
                  schedule_override_s: float | None = None) -> None:
    """Feed the stream to every on_kinesis_record handler, and run the schedules, until signalled."""
    from eventpipe.local.runner import Runner, consumers_from_app, run_schedules, scheduled_jobs_from_app

    module = _import_app()
    container = module.container
    settings = container.settings
    consumers = consumers_from_app(module, module.pipeline)  # chalicelib/pipeline.toml, stage "local"
    runner = Runner(container.clients.kinesis, container.clients.dynamodb, settings.state_table,
                    settings.stream_name, consumers, settings.region,
                    s3_dead_letter(container.clients.s3, settings.bucket, _stream_arn(container), settings.region),
                    poll_interval_s, max_retries)
    done = threading.Event()
    _stop_on_signals(done.set)
    runner.start()
    jobs = scheduled_jobs_from_app(module, schedule_override_s)
    threading.Thread(target=run_schedules, args=(jobs, settings.region, runner.stop_event), daemon=True,
                     name="schedules").start()
    from eventpipe.local.queue_runner import queue_consumers_from_app, run_queue_pollers
    queues = queue_consumers_from_app(module, module.pipeline)  # SQS -> Lambda (the finalize-units queue)
    run_queue_pollers(container.clients.sqs, queues, settings.region, runner.stop_event)
    print(json.dumps({"runner": "started", "consumers": [c.name for c in consumers],
                      "queues": {q.name: q.queue for q in queues},
                      "schedules": {j.name: j.interval_s for j in jobs}}), flush=True)
    while not done.wait(30):
        runner.start()  # picks up new shards after a reshard
    runner.stop()
