#!/usr/bin/env bash
# Installs Debian's chromium and chromium-driver for the console's browser tests, when
# they are missing and we may (root with apt-get). Otherwise says why and goes on: the
# browser tests then skip with that reason.
set -u
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then exit 0; fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "install-browser: not root or no apt-get: the browser tests will be skipped" >&2
  exit 0
fi
echo "install-browser: installing chromium and chromium-driver (Debian packages)" >&2
apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null \
  || echo "install-browser: apt-get failed: the browser tests will be skipped" >&2
exit 0
