"""The HTTP edge's helpers: what every route shares, and nothing about apps or the lake.

Typed request errors and their status codes (``errors``), the three dialects that find a
request's key and word its errors (``dialects``: native, Segment, PostHog), the route
helpers ``app.py`` declares routes with (``routes``), what a read costs and the guard on
reads in flight (``read_costs``), the OpenAPI document built from the code (``openapi``,
``openapi_schemas``), ``GET /health`` (``health``) and the dashboard page's files
(``dashboard``; the files are in ``chalicelib/dashboard/static/``).

Layer: below ``apps/`` (which raise these errors), above ``processing/`` and ``stream/``.
"""
