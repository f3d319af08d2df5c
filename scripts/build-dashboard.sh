#!/usr/bin/env bash
# The dashboard's front-end libraries, from the npm registry (web/package-lock.json), copied into the
# static files the Chalice app serves (chalicelib/dashboard/static/vendor/, git-ignored). Run by
# `make run`, `make test` and the Lambda artifact builder when the built files are missing or older
# than the lockfile; `--force` rebuilds.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=chalicelib/dashboard/static/vendor
LOCK=web/package-lock.json
# uPlot draws the charts; topojson-client turns world-atlas's Natural Earth TopoJSON (coastlines and
# borders, 1:50m) into the Regions map's outlines (no map tiles from the network).
FILES=("uplot/dist/uPlot.iife.min.js:uplot.js" "uplot/dist/uPlot.min.css:uplot.css"
       "topojson-client/dist/topojson-client.min.js:topojson.js" "world-atlas/countries-50m.json:countries-50m.json")
LICENSES=(uplot topojson-client world-atlas)
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
for package in "${LICENSES[@]}"; do
  cp "web/node_modules/$package/LICENSE" "$OUT/$package.LICENSE"
done
names=()
for pair in "${FILES[@]}"; do names+=("${pair#*:}"); done
echo "build-dashboard.sh: $(cd "$OUT" && cat "${names[@]}" | wc -c) bytes of vendor files in $OUT"
