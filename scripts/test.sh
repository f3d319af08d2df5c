#!/usr/bin/env bash
# `make test`: every suite. The search suite also runs against a real OpenSearch node
# (downloaded through Maven Central, cached) when Java is present, unless OPENSEARCH_URL is
# already set or EVENTPIPE_REAL_OPENSEARCH=0.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
# The dashboard's browser test needs the built front-end and a headless Chromium.
bash scripts/build-dashboard.sh
bash scripts/ensure-chromium.sh
started_node=0
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
cleanup() { if [[ $started_node == 1 ]]; then bash scripts/opensearch-node.sh stop || true; fi; }
trap cleanup EXIT
"$BIN/python" -m pytest -q -p no:cacheprovider "$@"
