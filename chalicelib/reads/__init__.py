"""The read services behind ``GET /v1/metrics`` and ``GET /v1/pipeline``.

``metrics`` (window results from the rollups, with the lake's consistency rule),
``pipeline_status`` (the pipeline's own figures: accepted, late, bad rows, finalization
lag) and ``stream_lag`` (how far each consumer is behind the stream).

Layer: a service, beside ``ingest/`` and ``search/``; below ``runtime/``, above ``lake/``.
"""
