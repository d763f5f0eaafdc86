#!/usr/bin/env bash
# Installs what the test suite needs beyond Python packages, as Debian packages: Chromium for the
# browser tests (Playwright drives it; it never downloads a browser of its own) and Node.js, which
# the AWS CDK library runs on (tests/infra synthesizes the stack). Idempotent: what is there
# already is left as it is. Elsewhere than Debian or Ubuntu, install the two yourself.
set -euo pipefail
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium fonts-dejavu-core)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
  SUDO="sudo"
fi
echo "Installing ${missing[*]} for the tests (Debian packages)…"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
/usr/bin/chromium --version
node --version
