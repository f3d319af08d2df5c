#!/usr/bin/env bash
# The JavaScript SDKs of the SDK tests, from the npm registry (scripts/js-sdks/package-lock.json, `npm ci`,
# install scripts not run), and the browser test page's bundle (esbuild: browser/page.js -> build/page.js).
# node_modules/ and build/ are git-ignored. Run by the tests' setup (tests/e2e/conftest.py `js_sdks`) and
# skipped when both are newer than the lockfile and the page's sources; `--force` reinstalls and rebuilds.
set -euo pipefail
cd "$(dirname "$0")"
command -v npm >/dev/null || { echo "js-sdks/setup.sh: npm (Node.js) is required for the SDK tests" >&2; exit 1; }
if [[ "${1:-}" == "--force" || ! -f node_modules/.package-lock.json || node_modules/.package-lock.json -ot package-lock.json ]]; then
  npm ci --no-audit --no-fund --silent
fi
stale=0
for source in package-lock.json browser/*.js; do
  if [[ ! -s build/page.js || build/page.js -ot "$source" ]]; then stale=1; fi
done
if [[ $stale == 1 || "${1:-}" == "--force" ]]; then
  node_modules/.bin/esbuild browser/page.js --bundle --format=iife --target=es2020 --outfile=build/page.js \
    --log-level=warning
fi
