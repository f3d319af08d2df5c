#!/usr/bin/env bash
# `make test`: every suite. The search suite also runs against a real OpenSearch node and the SQL
# suite against a real Trino node (both downloaded through Maven Central, cached under
# ~/.cache/eventpipe) when Java is present, unless OPENSEARCH_URL / TRINO_URL is already set or
# EVENTPIPE_REAL_OPENSEARCH=0 / EVENTPIPE_REAL_TRINO=0. Trino needs Java 24+: without one the
# Trino suite is skipped, and this script says why.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
# The docs site first (seconds): a broken internal link or anchor, or a reference page that no longer builds
# from the code, fails the run before the long suites (tests/unit/tools/test_docs_site.py checks the same).
NO_MKDOCS_2_WARNING=1 "$BIN/mkdocs" build --strict --quiet
# The dashboard's browser test needs the built front-end and a headless Chromium.
bash scripts/build-dashboard.sh
bash scripts/ensure-chromium.sh
started_node=0
started_trino=0
cleanup() {
  if [[ $started_node == 1 ]]; then bash scripts/opensearch-node.sh stop || true; fi
  if [[ $started_trino == 1 ]]; then bash scripts/trino-node.sh stop || true; fi
}
trap cleanup EXIT
if [[ -z "${TRINO_URL:-}" && "${EVENTPIPE_REAL_TRINO:-1}" != "0" ]]; then
  if url=$(bash scripts/trino-node.sh status 2>/dev/null); then
    export TRINO_URL="${url##* }" # a node someone else started: use it, leave it running
  elif why=$(bash scripts/trino-node.sh java); then
    started_trino=1 # launched now, waited for after OpenSearch is up: the two JVMs start side by side
    bash scripts/trino-node.sh launch || { echo "test.sh: could not start a Trino node" >&2; exit 1; }
  else
    echo "test.sh: SKIPPING the Trino SQL suite (tests/integration/query/test_trino.py): $why" >&2
  fi
fi
if [[ -z "${OPENSEARCH_URL:-}" && "${EVENTPIPE_REAL_OPENSEARCH:-1}" != "0" && -x scripts/opensearch-node.sh ]] \
    && command -v java >/dev/null; then
  if url=$(bash scripts/opensearch-node.sh start | tail -n 1); then
    export OPENSEARCH_URL="$url"
    started_node=1
  else
    echo "test.sh: could not start a real OpenSearch node" >&2
    exit 1
  fi
fi
if [[ $started_trino == 1 ]]; then
  url=$(bash scripts/trino-node.sh wait | tail -n 1) || { echo "test.sh: Trino did not start" >&2; exit 1; }
  export TRINO_URL="$url"
fi
# --durations: the slowest tests are listed at the end of every run (CI time is a budget).
"$BIN/python" -m pytest -q -p no:cacheprovider --durations=25 "$@"
