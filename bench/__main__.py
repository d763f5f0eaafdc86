"""``python -m bench [--only PART[,PART]] [--list] [-- part arguments]``: run the benchmark parts.

Parts run in the order of PARTS (pipeline first). A part is ``bench/<name>.py`` exposing
``main(argv) -> int``; a listed part whose module does not exist yet is reported and skipped.
Arguments after the known options are handed to the part, which needs ``--only`` naming exactly
one part (e.g. ``python -m bench --only pipeline --repeat 5``). Exit status: 0 when every part
that ran met its targets, 1 when one did not, 2 for a usage error.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import time

PARTS = ("pipeline", "metadata", "e2e", "cold-start", "cost")


def _module(part: str) -> str:
    return part.replace("-", "_")     # part cold-start is bench/cold_start.py


def _parts(value: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    for name in names:
        if name not in PARTS:
            raise argparse.ArgumentTypeError(f"unknown part {name!r}; parts: {', '.join(PARTS)}")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Run the Cloudstrype benchmarks.",
        epilog=f"parts, in order: {', '.join(PARTS)}")
    parser.add_argument("--only", type=_parts, action="append", metavar="PART[,PART]",
                        help="run only these parts (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the parts and exit")
    args, rest = parser.parse_known_args(argv)
    rest = [a for a in rest if a != "--"]  # `make bench`-style `-- --size-mib 16` separators
    if args.list:
        for name in PARTS:
            print(name)
        return 0
    selected = [p for p in PARTS if args.only is None or any(p in group for group in args.only)]
    if rest and len(selected) != 1:
        parser.error(f"extra arguments {' '.join(rest)!r} go to one part: add --only PART")

    status = 0
    for name in selected:
        try:
            module = importlib.import_module(f"bench.{_module(name)}")
        except ModuleNotFoundError as e:
            if e.name != f"bench.{_module(name)}":
                raise
            print(f"[bench] {name}: bench/{_module(name)}.py does not exist yet; skipped\n",
                  flush=True)
            if args.only is not None:
                status = max(status, 2)
            continue
        print(f"[bench] {name}", flush=True)
        started = time.perf_counter()
        result = module.main(list(rest))
        print(f"[bench] {name}: {'ok' if not result else 'TARGET MISSED'} "
              f"({time.perf_counter() - started:.1f} s)\n", flush=True)
        status = max(status, 1 if result else 0)
    return status


if __name__ == "__main__":
    sys.exit(main())
