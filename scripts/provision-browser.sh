#!/usr/bin/env bash
# Headless Chromium and its driver for the dashboard's browser test
# (tests/dashboard/test_dashboard_browser.py), from Debian's packages: the
# test drives /usr/bin/chromium through /usr/bin/chromedriver with selenium,
# so nothing is downloaded at test time. Idempotent; the test skips, saying
# why, where this could not run (no apt, no root).
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "provision-browser: no apt-get here; the browser test will skip" >&2
  exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null; then sudo="sudo"; else
    echo "provision-browser: not root and no sudo; the browser test will skip" >&2
    exit 0
  fi
fi
echo "provision-browser: installing chromium and chromium-driver (apt)" >&2
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null \
  || { $sudo apt-get update -q >/dev/null && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null; }
