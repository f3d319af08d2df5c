"""Athena SQL: the views generated from metrics.yaml, DuckDB as Athena locally, QuickSight setup."""
