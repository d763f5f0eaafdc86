#!/usr/bin/env bash
# Installs what the test suite needs beyond Python packages. Idempotent; called by `make test`.
set -euo pipefail
echo "test tools: nothing beyond Python packages yet"
