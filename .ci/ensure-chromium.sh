#!/usr/bin/env bash
# The browser test drives Debian's Chromium (Playwright cannot download browsers here).
# Install it when missing and we may (root); otherwise say what to do.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "== installing Debian's chromium for the browser test (once)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends chromium >/dev/null
  /usr/bin/chromium --version
else
  echo "error: /usr/bin/chromium is missing; install it (sudo apt-get install chromium)" >&2
  exit 1
fi
