"""eventpipe's Lambda package: everything the deployed functions run, and nothing else.

Layers, from the handlers down; the same order as the ``layers`` contract of ``.importlinter``
(``tests/unit/test_architecture.py`` checks that this list and that contract agree)::

    app.py              routes and handlers (wiring only)
    runtime/            settings (the one reader of the environment), AWS clients, the container
    ingest/ reads/ search/
                        services behind the routes, independent of each other: POST /v1/events and
                        the SDK routes; GET /v1/metrics and /v1/pipeline; GET /v1/search and its indexer
    lake/               the Kinesis consumers and schedules, and their S3/Glue/DynamoDB I/O
    apps/               applications: API keys, the key cache, per-app rate limits
    http/               the HTTP edge's helpers: typed errors, dialects, route helpers, read costs,
                        the OpenAPI builder, health, the dashboard page
    processing/         pure windowed keyed aggregation: windows, lateness, watermark, measures
    stream/             the stream contract: event envelope, record codec, Kinesis batches, bad rows

``dashboard/static/`` is not a package: the dashboard page's files, served by ``http/dashboard.py``.

Every package's ``__init__.py`` follows one convention (checked by ``tests/unit/test_architecture.py``):
a docstring saying what the package holds (in ``chalicelib``, also its layer); beyond it, only the
re-export of the package's public names (imports, ``__all__``, and a PEP 562 ``__getattr__`` for
imports too heavy to make eagerly). No other code: a registry or a helper lives in a module.

The tools around it (CLI, local stack, SQL engine, deploy) live in ``eventpipe/``.
"""
