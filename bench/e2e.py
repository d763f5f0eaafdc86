"""End-to-end benchmark: the `cloudstrype` CLI against a local stack, beside rclone.

Run: ``python -m bench --only e2e`` (or ``make bench`` for every part), with ``-- --size-mib N
--small-files N`` to change the workload.

Setup, all on this machine and measured in the same run:

* a fresh local stack (``cloudstrype serve``) in a temporary data directory, one user, three
  ``local`` storages, and the user's defaults set to ``raid1(3)`` + ``aes256-gcm``: each 4 MiB
  chunk is encrypted once and written to all three directories.
* rclone (Debian's package, installed by ``scripts/install-bench-tools.sh`` when missing): a
  ``crypt`` remote over a ``union`` of three local directories with ``create_policy = all``,
  which is the same work: encrypt, then write every byte three times.

Workload:

1. one file of ``--size-mib`` MiB (256 by default) of random bytes: ``cloudstrype put`` then
   ``cloudstrype get``, and ``rclone copy`` both ways; the downloads are checked byte for byte.
2. ``--small-files`` files (10,000 by default) of 1-4 KiB in one folder: ``cloudstrype put`` of
   the folder, the same ``put`` again with nothing changed (every file must be skipped as
   unchanged: same size and modification time), then ``cloudstrype ls -l`` of it (every page of
   the listing), and the same by rclone (``copy``, ``copy`` again, ``lsl``). Backend writes per
   small file: the files the first upload created in the three storage directories (rclone: in
   its three union directories) over the number of small files; the CLI batches small files and
   the server packs them, so this is well under one.

MB/s is 10^6 bytes of file content per second of wall time, including process start-up. The ratio
is Cloudstrype's speed over rclone's (>1 means Cloudstrype is faster). There is no pass/fail
target here: the figures are reported, not judged; a wrong byte fails the part.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.support import PASSWORD, Api, register_and_login, start_stack  # noqa: E402

MiB = 1024 * 1024


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(MiB):
            digest.update(block)
    return digest.hexdigest()


def _write_random(path: Path, size: int) -> None:
    with path.open("wb") as f:
        left = size
        while left:
            block = os.urandom(min(left, 4 * MiB))
            f.write(block)
            left -= len(block)


def _run_timed(command: list[str], env: dict, what: str,
               stdin: str | None = None) -> tuple[float, str]:
    """(seconds, stdout) of a command that must succeed."""
    started = time.perf_counter()
    done = subprocess.run(command, env=env, input=stdin, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}): {' '.join(command)}\n"
                           f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return elapsed, done.stdout


def _timed(command: list[str], env: dict, what: str, stdin: str | None = None) -> float:
    return _run_timed(command, env, what, stdin)[0]


def _ensure_rclone() -> str:
    found = shutil.which("rclone")
    if found:
        return found
    subprocess.run(["bash", str(REPO / "scripts" / "install-bench-tools.sh")], check=True)
    found = shutil.which("rclone")
    if not found:
        raise RuntimeError("rclone is still missing after scripts/install-bench-tools.sh")
    return found


def _rclone_config(rclone: str, root: Path) -> Path:
    dirs = [root / f"union-{i}" for i in range(3)]
    for d in dirs:
        d.mkdir(parents=True)
    obscured = subprocess.run([rclone, "obscure", "bench-password-" + os.urandom(8).hex()],
                              capture_output=True, text=True, check=True).stdout.strip()
    config = root / "rclone.conf"
    config.write_text(
        "[three]\ntype = union\n"
        f"upstreams = {' '.join(str(d) for d in dirs)}\n"
        "create_policy = all\n\n"
        "[safe]\ntype = crypt\nremote = three:bench\n"
        f"password = {obscured}\n")
    return config


def _ratio(value: float) -> str:
    # Three significant digits, so a small ratio does not print as 0.00x.
    return f"{value:>7.3g}x"


def _files_in(directories: list[Path]) -> int:
    """Files stored in `directories` (shares, or rclone's objects), hidden temporaries aside."""
    return sum(1 for d in directories if d.exists() for p in d.rglob("*")
               if p.is_file() and not p.name.startswith((".", "~")))


def _row(label: str, ours: float, theirs: float, unit: str) -> None:
    ratio = (ours / theirs) if theirs else float("inf")
    print(f"  {label:<34} {ours:>10.1f} {theirs:>10.1f} {unit:<8} {_ratio(ratio)}", flush=True)


def _seconds_row(label: str, ours: float, theirs: float) -> None:
    # For durations the ratio is theirs / ours, so above 1 still means Cloudstrype was faster.
    print(f"  {label:<34} {ours:>10.2f} {theirs:>10.2f} {'s':<8} {_ratio(theirs / ours)}",
          flush=True)


def run(size_mib: int, small_files: int, work: Path) -> int:
    rclone = _ensure_rclone()
    version = subprocess.run([rclone, "version"], capture_output=True, text=True).stdout
    print(f"  rclone: {version.splitlines()[0] if version else '?'}; CPUs: {os.cpu_count()}")

    stack = start_stack(work / "stack")
    try:
        api = Api(stack.url)
        user = register_and_login(api)
        disks: list[Path] = []
        for i in range(3):
            # Local storages live inside the operator's roots: the data directory's storages/.
            folder = stack.data_dir / "storages" / f"disk-{i}"
            folder.mkdir(parents=True)
            disks.append(folder)
            added = user.api.post("/api/cloud/storages", json={
                "kind": "local", "name": f"disk-{i}", "config": {"path": str(folder)}})
            if added.status_code != 201:
                raise RuntimeError(f"adding a local storage: {added.status_code} {added.text}")
        settings = user.api.put("/api/filesystem/settings",
                                json={"durability": "raid1(3)", "encryption": "aes256-gcm"})
        if settings.status_code != 200:
            raise RuntimeError(f"setting defaults: {settings.status_code} {settings.text}")

        home = work / "home"
        home.mkdir()
        env = {k: v for k, v in os.environ.items()
               if k not in ("CLOUDSTRYPE_SERVER", "CLOUDSTRYPE_TOKEN")}
        env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"))
        cli = [sys.executable, "-m", "cloudstrype_client.cli"]
        _timed(cli + ["login", "--server", stack.url, "-u", user.username, "--password-stdin",
                      "-q"], env, "cloudstrype login", stdin=PASSWORD + "\n")
        config = _rclone_config(rclone, work / "rclone")
        rc = [rclone, "--config", str(config)]

        # 1. One big file.
        size = size_mib * MiB
        big = work / "big.bin"
        _write_random(big, size)
        digest = _sha256(big)
        ours_up = _timed(cli + ["put", "-q", str(big), "/bench/big.bin"], env, "cloudstrype put")
        theirs_up = _timed(rc + ["copy", str(big), "safe:"], env, "rclone copy up")
        ours_file, theirs_dir = work / "ours.bin", work / "theirs"
        ours_down = _timed(cli + ["get", "-q", "/bench/big.bin", str(ours_file)], env,
                           "cloudstrype get")
        theirs_down = _timed(rc + ["copy", "safe:big.bin", str(theirs_dir)], env,
                             "rclone copy down")
        for name, got in (("cloudstrype get", ours_file), ("rclone", theirs_dir / "big.bin")):
            if _sha256(got) != digest:
                print(f"  {name} gave back different bytes", flush=True)
                return 1
        for path in (ours_file, theirs_dir / "big.bin"):
            path.unlink()
        mb = size / 1e6
        print(f"\n  {size_mib} MiB file, raid1(3) + aes256-gcm "
              "(rclone: crypt over a union of 3 dirs, create_policy all)")
        print(f"  {'':<34} {'cloudstrype':>10} {'rclone':>10} {'':<8} {'ratio':>7}")
        _row("upload", mb / ours_up, mb / theirs_up, "MB/s")
        _row("download", mb / ours_down, mb / theirs_down, "MB/s")

        # 2. Many small files (--small-files 0 measures the big file alone).
        if not small_files:
            return 0
        small = work / "small"
        small.mkdir()
        total = 0
        for i in range(small_files):
            data = os.urandom(1024 + (i * 7919) % 3072)
            (small / f"f{i:05d}.txt").write_bytes(data)
            total += len(data)
        put_small = cli + ["put", "-q", "-j", "8", str(small) + "/", "/small/"]
        copy_small = rc + ["copy", "--transfers", "8", str(small), "safe:small"]
        union = [work / "rclone" / f"union-{i}" for i in range(3)]
        ours_before, theirs_before = _files_in(disks), _files_in(union)
        ours_small = _timed(put_small, env, "cloudstrype put (small files)")
        theirs_small = _timed(copy_small, env, "rclone copy (small files)")
        ours_writes = (_files_in(disks) - ours_before) / small_files
        theirs_writes = (_files_in(union) - theirs_before) / small_files
        # Again, nothing changed: both only compare (size and modification time) and skip.
        ours_again, counts = _run_timed(put_small + ["--json"], env,
                                        "cloudstrype put (unchanged)")
        theirs_again = _timed(copy_small, env, "rclone copy (unchanged)")
        counts = json.loads(counts)
        if (counts["sent"], counts["skipped"]) != (0, small_files):
            print(f"  cloudstrype put of the unchanged folder: {counts}, not all "
                  f"{small_files} skipped", flush=True)
            return 1
        ours_list, listed = _run_timed(cli + ["ls", "-l", "/small"], env, "cloudstrype ls")
        theirs_list = _timed(rc + ["lsl", "safe:small"], env, "rclone lsl")
        count = len(listed.splitlines())        # `ls -l`: one line per entry
        if count != small_files:
            print(f"  cloudstrype ls listed {count} entries, not {small_files}", flush=True)
            return 1
        print(f"\n  {small_files} files of 1-4 KiB ({total / 1e6:.1f} MB), 8 at once")
        print(f"  {'':<34} {'cloudstrype':>10} {'rclone':>10} {'':<8} {'ratio':>7}")
        _seconds_row("upload", ours_small, theirs_small)
        print(f"  {'upload rate':<34} {small_files / ours_small:>10.0f} "
              f"{small_files / theirs_small:>10.0f} {'files/s':<8}", flush=True)
        print(f"  {'backend writes per file':<34} {ours_writes:>10.3f} {theirs_writes:>10.3f} "
              f"{'files':<8}", flush=True)
        _seconds_row("again, unchanged (all skipped)", ours_again, theirs_again)
        _seconds_row("list (ls -l / lsl)", ours_list, theirs_list)
        print("  (ratio: above 1 means Cloudstrype did it faster)", flush=True)
        return 0
    finally:
        stack.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench --only e2e --",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256, help="size of the big file")
    parser.add_argument("--small-files", type=int, default=10_000,
                        help="how many small files")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="cloudstrype-bench-"))
    try:
        return run(args.size_mib, args.small_files, work)
    except (RuntimeError, requests.RequestException) as e:
        print(f"  e2e: {e}", flush=True)
        return 1
    finally:
        if args.keep:
            print(f"  work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
