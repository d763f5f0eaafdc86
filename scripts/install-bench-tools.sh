#!/usr/bin/env bash
# Installs what the end-to-end benchmark compares Cloudstrype with: rclone, from Debian's
# packages. Idempotent; `python -m bench` (make bench) calls it when rclone is missing.
set -euo pipefail

if command -v rclone >/dev/null 2>&1; then
    echo "bench tools: $(rclone version 2>/dev/null | head -n 1) already installed"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "bench tools: no apt-get here; install rclone yourself (https://rclone.org/install/)" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "bench tools: installing rclone needs root (or sudo)" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
# The package lists may be missing or stale on a fresh machine: update, then retry once.
if ! $SUDO apt-get install -y --no-install-recommends rclone; then
    $SUDO apt-get update
    $SUDO apt-get install -y --no-install-recommends rclone
fi
echo "bench tools: $(rclone version | head -n 1) installed"
