"""The environment variables of ``eventpipe run``, for its --help (kept light: no AWS or search imports)."""

from __future__ import annotations

#: name, default, meaning. ``StackConfig.from_env`` (stack.py) and the CLI read them.
ENVIRONMENT = (
    ("EVENTPIPE_HTTP_PORT", "8000", "port of the HTTP API (`eventpipe send` reads it too)"),
    ("EVENTPIPE_MOTO_PORT", "5000", "port of moto server, the local AWS (the other commands read it too)"),
    ("EVENTPIPE_SEARCH_PORT", "9200", "port of the embedded search server (osmem-server)"),
    ("OPENSEARCH_URL", "", "an OpenSearch node to use instead of the embedded search server"),
    ("EVENTPIPE_SHARDS", "2", "shards of the local Kinesis stream"),
    ("EVENTPIPE_DEMO_APP", "demo", "the app bootstrap creates (an operator)"),
    ("EVENTPIPE_DEMO_KEY", "demo-key", "its API key"),
    ("EVENTPIPE_DATA_DIR", ".eventpipe-data", "the data folder (as --data)"),
    ("EVENTPIPE_SEARCH_BULK_BYTES", "524288", "largest bulk request to the embedded search server"),
    ("EVENTPIPE_SEARCH_TIMEOUT_S", "30", "how long a search waits for the embedded search server"),
    ("EVENTPIPE_SCHEDULE_SECONDS", "", "run every scheduled job this often (seconds) instead of its rate"),
    ("EVENTPIPE_VERBOSE", "", "1: show moto's access log (a line per AWS call)"),
)


def environment_help() -> str:
    """The table as the epilog of ``eventpipe run --help``."""
    width = max(len(name) for name, _, _ in ENVIRONMENT)
    lines = [f"  {name:<{width}}  {text}" + (f" (default {default})" if default else "")
             for name, default, text in ENVIRONMENT]
    return ("environment variables:\n" + "\n".join(lines) + "\n\nThe pipeline's own EVENTPIPE_* settings "
            "(chalicelib/runtime/settings.py) reach the API and the runner as they are.")
