"""The floor under a Python download on this machine: what one Python process pays to read a
file's encrypted 4 MiB pieces from disk, decrypt them (AES-256-GCM, the library Cloudstrype
uses) and write the file, on two threads: no HTTP, no server, no metadata, no sha256.

`bench.e2e` times it beside `cloudstrype get` and rclone in the same rounds (a third column of
the download), so the report shows how much of the gap to rclone a Python process pays before
any of Cloudstrype's own work. It runs as its own process, started like the CLI is, since both
the CLI and rclone pay their start-up in their times.

Run alone: ``python -m bench.download_floor prepare FILE DIR`` (untimed: encrypts FILE into
DIR), then ``python -m bench.download_floor restore DIR OUT``.
"""
from __future__ import annotations

import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PIECE = 4 * 1024 * 1024
KEY = bytes(range(32))      # a benchmark's key: the pieces are random bytes made for it


def _nonce(index: int) -> bytes:
    return index.to_bytes(12, "big")


def prepare(source: Path, pieces: Path) -> None:
    """Encrypt `source` into `pieces`/0, 1, ... (each 4 MiB of it, plus its 16-byte tag)."""
    pieces.mkdir(parents=True, exist_ok=True)
    aead = AESGCM(KEY)
    with source.open("rb") as f:
        index = 0
        while data := f.read(PIECE):
            (pieces / str(index)).write_bytes(aead.encrypt(_nonce(index), data, None))
            index += 1


def restore(pieces: Path, out: Path, threads: int = 2) -> None:
    """Decrypt every piece into its place in `out`, `threads` pieces at a time."""
    count = len(list(pieces.iterdir()))
    aead = AESGCM(KEY)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    local = threading.local()

    def one(index: int) -> None:
        buffer = getattr(local, "buffer", None)
        if buffer is None:
            buffer = local.buffer = bytearray(PIECE + 16)
        with (pieces / str(index)).open("rb", buffering=0) as f:
            size = f.readinto(buffer)
        plain = memoryview(aead.decrypt(_nonce(index), memoryview(buffer)[:size], None))
        written = 0
        while written < len(plain):
            written += os.pwrite(fd, plain[written:], index * PIECE + written)

    try:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            for done in [pool.submit(one, i) for i in range(count)]:
                done.result()
    finally:
        os.close(fd)


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "prepare":
        prepare(Path(argv[1]), Path(argv[2]))
    elif len(argv) == 3 and argv[0] == "restore":
        restore(Path(argv[1]), Path(argv[2]))
    else:
        print("usage: python -m bench.download_floor prepare FILE DIR | restore DIR OUT",
              file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
