#!/usr/bin/env bash
# Headless Chromium and its WebDriver for the dashboard's browser test (tests/e2e/test_dashboard.py),
# from Debian's packages. Skips when both are installed; fails loudly when they cannot be installed.
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "ensure-chromium.sh: chromium and chromedriver are missing and there is no apt-get to install them" >&2
  exit 1
fi
SUDO=""
if [[ $(id -u) != 0 ]]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
command -v chromium >/dev/null && command -v chromedriver >/dev/null
