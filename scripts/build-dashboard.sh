#!/usr/bin/env bash
# The dashboard's front-end libraries, from the npm registry (web/package-lock.json), copied into the
# static files the Chalice app serves (chalicelib/dashboard/static/vendor/, git-ignored). Run by
# `make run`, `make test` and the Lambda artifact builder when the built files are missing or older
# than the lockfile; `--force` rebuilds.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=chalicelib/dashboard/static/vendor
LOCK=web/package-lock.json
FILES=("uplot/dist/uPlot.iife.min.js:uplot.js" "uplot/dist/uPlot.min.css:uplot.css")
fresh=1
for pair in "${FILES[@]}"; do
  target="$OUT/${pair#*:}"
  if [[ ! -s "$target" || "$target" -ot "$LOCK" ]]; then fresh=0; fi
done
if [[ $fresh == 1 && "${1:-}" != "--force" ]]; then
  exit 0
fi
command -v npm >/dev/null || { echo "build-dashboard.sh: npm (Node.js) is required to build the dashboard" >&2; exit 1; }
npm ci --prefix web --no-audit --no-fund --silent
mkdir -p "$OUT"
for pair in "${FILES[@]}"; do
  cp "web/node_modules/${pair%%:*}" "$OUT/${pair#*:}"
done
cp web/node_modules/uplot/LICENSE "$OUT/uplot.LICENSE"
echo "build-dashboard.sh: $(cd "$OUT" && wc -c uplot.js uplot.css | tail -n 1 | awk '{print $1}') bytes of vendor files in $OUT"
