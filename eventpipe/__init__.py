"""Tools around the Lambda package, never deployed: the ``eventpipe`` command.

``cli`` (the command), ``local/`` (the local stack: moto, search server, the runner that plays
Lambda's event source mapping, bootstrap), ``query/`` (Athena SQL on DuckDB, the generated views,
QuickSight), ``sender`` and ``generate`` (send files, make synthetic events).
"""
