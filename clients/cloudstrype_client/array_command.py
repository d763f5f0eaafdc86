"""The `cloudstrype array` command line, kept apart from the member program itself
(cloudstrype_client.member) so that every other command starts without importing asyncio and
websockets: the program is loaded only when `array` runs."""
from __future__ import annotations

import argparse
import re
from pathlib import Path

DEFAULT_PING_SECONDS = 240          # API Gateway closes a WebSocket idle for 10 minutes

_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9,
          "gb": 10**9, "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30,
          "tib": 2**40}


def parse_size(text: str) -> int:
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", text or "")
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _UNITS:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a size; write e.g. 20GB, 500MB or 1.5TiB (GB = 10^9 bytes, "
            f"GiB = 2^30).")
    size = int(float(match.group(1)) * _UNITS[unit])
    if size < 10**6:
        raise argparse.ArgumentTypeError(f"{text!r} is too small; give a member at least 1MB.")
    return size


def _run(args) -> int:
    from cloudstrype_client import member
    return member.run(args)


def add_parser(commands) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        "array", help="make this machine an array member (donate disk space)",
        description="Give the account a folder on this machine as storage. Runs until Ctrl-C.")
    parser.add_argument("--server", help="the Cloudstrype URL, e.g. http://127.0.0.1:8080 "
                                         "(default: the saved login's server)")
    parser.add_argument("--dir", required=True, type=Path, help="the folder to store shares in")
    parser.add_argument("--size", required=True, type=parse_size,
                        help="how much of the disk to give, e.g. 20GB, 500MB, 1TiB")
    parser.add_argument("--name", help="how the member is shown (default: host:folder)")
    parser.add_argument("--token", help="an access token (default: $CLOUDSTRYPE_TOKEN, then the "
                                        "saved login)")
    parser.add_argument("--transfers", type=int, default=4,
                        help="transfers at once (default 4)")
    parser.add_argument("--ping-interval", type=float, default=DEFAULT_PING_SECONDS,
                        help=argparse.SUPPRESS)
    parser.add_argument("--ws-url", help=argparse.SUPPRESS)
    parser.add_argument("--quiet", action="store_true", help="no status line")
    parser.set_defaults(run=_run)
    return parser
