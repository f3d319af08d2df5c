"""Tools around the Lambda package, never deployed: the ``eventpipe`` command.

``cli`` (the command; ``cli_args``, ``cli_history``), ``local/`` (the local stack: moto, search
server, the runner that plays Lambda's event source mapping, bootstrap), ``query/`` (the
``eventpipe query`` SQL tool: Athena SQL on DuckDB or Trino, the generated views, QuickSight),
``deploy/`` (the Lambda artifacts and the CloudFormation template), ``ops/`` (redrive, replay,
backfill, migrations), ``sender`` and ``generate`` (send files, make synthetic events).
"""
