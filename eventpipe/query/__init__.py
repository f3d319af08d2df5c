"""Athena SQL (the ``eventpipe query`` command): the views generated from metrics.yaml, DuckDB or
Trino as Athena locally, and QuickSight setup (``quicksight``, its sheets in ``quicksight_dashboard``)."""
