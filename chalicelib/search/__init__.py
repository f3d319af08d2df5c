"""Search: daily OpenSearch indices of events, fed from Kinesis, queried by app.

Public API (what app.py wires):

* ``client_for_url`` / ``client_for_aws`` - build the OpenSearch client.
* ``ensure_template(client, TemplateSettings(...))`` - idempotent, at cold start or deploy.
* ``index_kinesis_batch(records, client=, sink=, clock=, config=)`` - the Kinesis
  handler's work; ``.lambda_response()`` is its return value.
* ``delete_expired_indices(client, retention_days, now_ms)`` - the scheduled job.
* ``search_events(client, app_id, params, now_ms)`` - GET /v1/search.

Layer: a service, beside ``ingest/`` and ``reads/``; below ``runtime/``, above ``lake/``.
"""

from chalicelib.stream.badrows import BadRow, BadRowsSink, MemoryBadRowsSink
from chalicelib.stream.retry import Backoff
from chalicelib.search.client import client_for_aws, client_for_url
from chalicelib.search.errors import SearchParameterError, SearchUnavailableError, TemplateError
from chalicelib.search.indexer import IndexerConfig, IndexResult, index_kinesis_batch
from chalicelib.search.query import SearchSettings
from chalicelib.search.retention import delete_expired_indices
from chalicelib.search.service import search_events
from chalicelib.search.template import TemplateSettings, build_index_template, ensure_template

__all__ = [
    "Backoff", "BadRow", "BadRowsSink", "IndexResult", "IndexerConfig", "MemoryBadRowsSink",
    "SearchParameterError", "SearchSettings", "SearchUnavailableError", "TemplateError", "TemplateSettings",
    "build_index_template", "client_for_aws", "client_for_url", "delete_expired_indices", "ensure_template",
    "index_kinesis_batch", "search_events",
]
