"""eventpipe's Lambda package: everything the deployed functions run, and nothing else.

Layers, from the handlers down (checked by import-linter, see ``.importlinter``)::

    app.py              routes and handlers (wiring only)
    runtime/            settings (the one reader of the environment), AWS clients, the container
    api/                HTTP errors, app keys, health, route helpers
    ingest/ query/      services behind the routes: POST /v1/events, GET /v1/metrics
    lake/ search/       the Kinesis consumers and schedules, and their S3/Glue/DynamoDB/OpenSearch I/O
    processing/         pure windowed keyed aggregation: windows, lateness, watermark, measures
    stream/             the stream contract: event envelope, record codec, Kinesis batches, bad rows

The tools around it (CLI, local stack, SQL engine, deploy) live in ``eventpipe/``.
"""
