"""The lake: the Kinesis consumers and scheduled jobs that write it, and its S3/Glue/DynamoDB I/O.

The raw events Iceberg table (``raw_*``, ``iceberg_io``, ``legacy_archive``), metric
partials and their finalization (``consumers``, ``finalizer``, ``final_rows``), reading
windows back (``rollups``), where things live (``layout``), the Glue catalog (``glue``),
bad rows (``badrows``), pipeline state and progress (``state``, ``progress``), S3
mechanics (``s3io``) and sketches for SQL engines (``sql_sketch``).

Layer: below the services (``ingest/``, ``reads/``, ``search/``), above ``apps/``.
"""
