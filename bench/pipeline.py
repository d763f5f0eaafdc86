"""Chunk codec benchmark: encode/decode speed of every scheme, and the sum-of-stages target.

Run: ``python -m bench`` (all parts), ``python -m bench --only pipeline``, or
``python -m bench.pipeline [--repeat N] [--rounds N]``.

What is measured, all in one process, on 4 MiB chunks of random bytes (MB = 10^6 bytes):

* Raw stage speeds: AES-256-GCM encrypt/decrypt of 4 MiB (cryptography's AESGCM), SHA-256 and
  MD5 of 4 MiB (hashlib), zfec encode (K data blocks of one share's size -> the M parity blocks)
  and zfec decode (the first M data shares lost) for each rs(K,M) benchmarked.
* Codec throughput for every encryption x durability: ``codec.encode`` of the chunk, ``decode``
  with every share available, and ``decode`` with the first M (rs) / N-1 (raid1) shares lost.
  MB/s is plaintext bytes per second of wall time.
* The target, for aes256-gcm + rs(4,2). Each stage is timed on exactly the work the codec does for
  one 4 MiB chunk, as seconds per chunk:

    encode limit = t(AES-GCM encrypt of the 4 MiB chunk)
                 + t(SHA-256 of each of the 6 shares, 6 x 1,048,580 B: what encode hashes)
                 + t(zfec encode of the 4 data blocks into the 2 parity blocks)
    decode limit = t(AES-GCM decrypt of the 4 MiB + 16 B ciphertext)
                 + t(SHA-256 of the 4 shares decode uses, 4 x 1,048,580 B)
                 + t(zfec decode of those 4 shares: ~0 when they are the data shares, which is
                   what decode picks; real work in the degraded case, shares 2..5)

  ratio = limit / t(codec), i.e. codec MB/s over 1/(1/aes + 1/hash + 1/zfec) with each stage's
  speed expressed in plaintext MB per second. Copies, padding, Python overhead and allocation are
  the codec's to pay for: PASS needs ratio >= 70%. The stages and the codec are timed in
  interleaved rounds so that a noisy neighbour hits both alike; the medians are compared.

Conditions: the process is pinned to one CPU (os.sched_setaffinity) for this part and unpinned
afterwards; the garbage collector is paused while timing. Before timing, one 6 MB buffer (a
Lambda's largest synchronous payload) is allocated and freed, which is the state of any process
that has received a request: glibc then keeps up to ~12 MB of freed memory instead of returning it
to the kernel after each chunk. Without that, whichever operation first frees a few MiB pays
~1,500 fresh page faults per chunk. The pf/op column shows minor page faults per operation so the
effect stays visible.
"""
from __future__ import annotations

import argparse
import gc
import hashlib
import os
import platform
import resource
import statistics
import sys
import time
from contextlib import contextmanager

import cryptography
import zfec
from cloudstrype.pipeline import codec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MiB = 1024 * 1024
CHUNK = 4 * MiB
ENCRYPTIONS = ("none", "aes256-gcm", "aes256-md5")
DURABILITIES = ("raid1(1)", "raid1(3)", "rs(4,2)", "rs(3,2)", "rs(10,4)")
TARGET = ("aes256-gcm", "rs(4,2)")
TARGET_RATIO = 0.70
WARM_BUFFER = 6_000_000


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _time(fn, reps: int) -> tuple[float, float]:
    """Median seconds per call of ``fn`` over ``reps`` calls (after one warm-up call), and
    minor page faults per call."""
    fn()
    samples = []
    faults = _faults()
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples), (_faults() - faults) / reps


def _mbs(seconds: float, nbytes: int = CHUNK) -> float:
    return nbytes / seconds / 1e6


@contextmanager
def _one_cpu():
    """Pin to one CPU for the duration; yields a sentence saying what happened."""
    if not hasattr(os, "sched_setaffinity"):
        yield "not pinned (os.sched_setaffinity is not available here)"
        return
    before = os.sched_getaffinity(0)
    cpu = min(before)
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError as e:
        yield f"not pinned ({e})"
        return
    try:
        yield (f"pinned to CPU {cpu} of {{{', '.join(map(str, sorted(before)))}}} "
               f"with os.sched_setaffinity (restored afterwards)")
    finally:
        os.sched_setaffinity(0, before)


@contextmanager
def _gc_paused():
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _key(encryption: str) -> bytes | None:
    return None if encryption == "none" else codec.new_data_key()


def _raw_stages(data: bytes, reps: int) -> list[tuple[str, float, int]]:
    """[(label, seconds per op, bytes processed)]"""
    rows = []
    key, nonce, aad = codec.new_data_key(), os.urandom(12), codec.associated_data("bench")
    aes = AESGCM(key)
    ciphertext = aes.encrypt(nonce, data, aad)
    rows.append(("AES-256-GCM encrypt 4 MiB",
                 _time(lambda: AESGCM(key).encrypt(nonce, data, aad), reps)[0], CHUNK))
    rows.append(("AES-256-GCM decrypt 4 MiB",
                 _time(lambda: AESGCM(key).decrypt(nonce, ciphertext, aad), reps)[0], CHUNK))
    rows.append(("SHA-256 4 MiB", _time(lambda: hashlib.sha256(data).digest(), reps)[0], CHUNK))
    rows.append(("MD5 4 MiB", _time(lambda: hashlib.md5(data).digest(), reps)[0], CHUNK))
    for spec in DURABILITIES:
        durability = codec.parse_durability(spec)
        if durability.kind != "rs":
            continue
        k, n = durability.k, durability.total_shares
        encoded = codec.encode("bench", data, "aes256-gcm", durability, key)
        blocks = tuple(encoded.shares[:k])
        encoder = zfec.Encoder(k, n)
        parity = tuple(range(k, n))
        # _time() runs each closure before the next iteration; the defaults only pin its values.
        rows.append((f"zfec encode {spec}: {k} x {len(blocks[0])} B -> {n - k} parity",
                     _time(lambda encoder=encoder, blocks=blocks, parity=parity:
                           encoder.encode(blocks, parity), reps)[0], CHUNK))
        used = tuple(range(durability.m, n))
        have = tuple(encoded.shares[i] for i in used)
        decoder = zfec.Decoder(k, n)
        rows.append((f"zfec decode {spec}: shares {used[0]}..{used[-1]}",
                     _time(lambda decoder=decoder, have=have, used=used:
                           decoder.decode(have, used), reps)[0], CHUNK))
    return rows


def _scheme_rows(chunks: list[bytes], reps: int) -> list[dict]:
    rows = []
    for encryption in ENCRYPTIONS:
        for spec in DURABILITIES:
            durability = codec.parse_durability(spec)
            key = _key(encryption)
            turn = iter(range(1 << 30))

            # Only called (and timed) within this iteration; the defaults pin its values.
            def do_encode(turn=turn, encryption=encryption, durability=durability, key=key):
                return codec.encode("bench", chunks[next(turn) % len(chunks)], encryption,
                                    durability, key)

            encoded = do_encode()
            meta = encoded.meta
            shares = dict(enumerate(encoded.shares))
            degraded = {i: s for i, s in shares.items() if i >= durability.tolerates}
            assert codec.decode("bench", shares, meta, key).data in chunks
            t_enc, pf_enc = _time(do_encode, reps)
            t_dec, pf_dec = _time(lambda shares=shares, meta=meta, key=key:
                                  codec.decode("bench", shares, meta, key), reps)
            t_deg, pf_deg = _time(lambda degraded=degraded, meta=meta, key=key:
                                  codec.decode("bench", degraded, meta, key), reps)
            rows.append({
                "encryption": encryption, "durability": spec,
                "shares": f"{durability.total_shares} x {meta['share_size']}",
                "stored": durability.total_shares * meta["share_size"] / CHUNK,
                "encode": t_enc, "decode": t_dec, "degraded": t_deg,
                "faults": (pf_enc + pf_dec + pf_deg) / 3,
            })
    return rows


def _target(chunks: list[bytes], rounds: int) -> dict:
    """Interleaved rounds of the three stages and the codec, for aes256-gcm + rs(4,2)."""
    encryption, spec = TARGET
    durability = codec.parse_durability(spec)
    k, n, m = durability.k, durability.total_shares, durability.m
    key = codec.new_data_key()
    aad = codec.associated_data("bench")
    encoder, decoder = zfec.Encoder(k, n), zfec.Decoder(k, n)
    prepared = []
    for data in chunks:
        encoded = codec.encode("bench", data, encryption, durability, key)
        ciphertext = AESGCM(key).encrypt(encoded.nonce, data, aad)
        prepared.append((data, encoded, ciphertext))
    normal_used, degraded_used = tuple(range(k)), tuple(range(m, n))

    stages = {name: [] for name in (
        "enc_aes", "enc_hash", "enc_zfec", "enc_codec",
        "dec_aes", "dec_hash", "dec_zfec", "dec_codec",
        "deg_hash", "deg_zfec", "deg_codec")}

    def timed(name, fn):
        start = time.perf_counter()
        fn()
        stages[name].append(time.perf_counter() - start)

    sha256 = hashlib.sha256
    for r in range(rounds + 1):
        data, encoded, ciphertext = prepared[r % len(prepared)]
        shares, meta, nonce = encoded.shares, encoded.meta, encoded.nonce
        all_shares = dict(enumerate(shares))
        lost = {i: shares[i] for i in degraded_used}
        data_blocks = tuple(shares[:k])
        used_normal = tuple(shares[i] for i in normal_used)
        used_degraded = tuple(shares[i] for i in degraded_used)
        # timed() calls each lambda at once; the defaults only pin this round's values.
        timed("enc_aes", lambda data=data: AESGCM(key).encrypt(os.urandom(12), data, aad))
        timed("enc_hash", lambda shares=shares: [sha256(s).hexdigest() for s in shares])
        timed("enc_zfec", lambda blocks=data_blocks: encoder.encode(blocks, tuple(range(k, n))))
        timed("enc_codec",
              lambda data=data: codec.encode("bench", data, encryption, durability, key))
        timed("dec_aes", lambda nonce=nonce, ciphertext=ciphertext:
              AESGCM(key).decrypt(nonce, ciphertext, aad))
        timed("dec_hash", lambda used=used_normal: [sha256(s).hexdigest() for s in used])
        timed("dec_zfec", lambda used=used_normal: decoder.decode(used, normal_used))
        timed("dec_codec",
              lambda shares=all_shares, meta=meta: codec.decode("bench", shares, meta, key))
        timed("deg_hash", lambda used=used_degraded: [sha256(s).hexdigest() for s in used])
        timed("deg_zfec", lambda used=used_degraded: decoder.decode(used, degraded_used))
        timed("deg_codec", lambda lost=lost, meta=meta: codec.decode("bench", lost, meta, key))
        if r == 0:                                   # the first round is a warm-up
            for samples in stages.values():
                samples.clear()
    med = {name: statistics.median(samples) for name, samples in stages.items()}
    share_size = len(prepared[0][1].shares[0])
    result = {"rounds": rounds, "share_size": share_size, "k": k, "n": n, "m": m, "lines": []}
    for label, aes, hash_, zf, codec_t, hash_label, zfec_label in (
            ("encode", "enc_aes", "enc_hash", "enc_zfec", "enc_codec",
             f"SHA-256 of the {n} shares", f"zfec encode {k} -> {m} parity"),
            ("decode", "dec_aes", "dec_hash", "dec_zfec", "dec_codec",
             f"SHA-256 of shares 0..{k - 1}", f"zfec decode shares 0..{k - 1}"),
            (f"decode, shares 0..{m - 1} lost", "dec_aes", "deg_hash", "deg_zfec", "deg_codec",
             f"SHA-256 of shares {m}..{n - 1}", f"zfec decode shares {m}..{n - 1}")):
        limit = med[aes] + med[hash_] + med[zf]
        result["lines"].append({
            "label": label, "aes": med[aes], "hash": med[hash_], "zfec": med[zf],
            "hash_label": hash_label, "zfec_label": zfec_label,
            "aes_label": "AES-GCM encrypt" if label == "encode" else "AES-GCM decrypt",
            "limit": limit, "codec": med[codec_t], "ratio": limit / med[codec_t]})
    return result


def _print_table(headers: list[str], rows: list[list[str]], align: str) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells):
        return "  " + "  ".join(c.ljust(w) if a == "<" else c.rjust(w)
                                for c, w, a in zip(cells, widths, align, strict=True))
    print(line(headers))
    print("  " + "  ".join("-" * w for w in widths))
    for row in rows:
        print(line(row))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=15,
                        help="timed runs per operation in the raw and per-scheme tables "
                             "(median reported; default 15)")
    parser.add_argument("--rounds", type=int, default=61,
                        help="interleaved rounds for the aes256-gcm + rs(4,2) target "
                             "(default 61)")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.rounds < 1:
        parser.error("--repeat and --rounds must be at least 1")

    started = time.perf_counter()
    with _one_cpu() as pinning, _gc_paused():
        warm = bytearray(WARM_BUFFER)
        del warm
        chunks = [os.urandom(CHUNK) for _ in range(2)]

        print("Cloudstrype chunk codec benchmark: 4 MiB chunks of random bytes; MB = 10^6 bytes; "
              "medians")
        print(f"  {pinning}")
        print(f"  Python {platform.python_version()}, cryptography {cryptography.__version__}, "
              f"zfec {zfec.__version__}, {platform.machine()}, {_cpu_model()}")
        print(f"  allocator: one {WARM_BUFFER / 1e6:.0f} MB buffer freed before timing (see "
              f"bench/pipeline.py); gc paused while timing")
        print()

        raw = _raw_stages(chunks[0], args.repeat)
        print(f"Raw stage speeds (median of {args.repeat})")
        _print_table(["stage", "ms/op", "MB/s"],
                     [[label, f"{t * 1e3:.2f}", f"{_mbs(t, nbytes):,.0f}"]
                      for label, t, nbytes in raw], "<>>")
        print()

        rows = _scheme_rows(chunks, args.repeat)
        print(f"Codec speed, MB/s of plaintext (median of {args.repeat}); 'degraded' decodes with "
              f"the first M (rs) / N-1 (raid1) shares lost")
        _print_table(
            ["encryption", "durability", "shares x bytes", "stored", "encode", "decode",
             "degraded", "pf/op"],
            [[r["encryption"], r["durability"], r["shares"], f"{r['stored']:.2f}x",
              f"{_mbs(r['encode']):,.0f}", f"{_mbs(r['decode']):,.0f}",
              f"{_mbs(r['degraded']):,.0f}", f"{r['faults']:.0f}"] for r in rows],
            "<<>>>>>>")
        print()

        target = _target(chunks, args.rounds)

    print(f"Target: aes256-gcm + rs(4,2) at >= {TARGET_RATIO:.0%} of the sum-of-stages limit "
          f"(median of {target['rounds']} interleaved rounds)")
    print("  Each stage is timed on the work the codec does for one 4 MiB chunk (shares of "
          f"{target['share_size']:,} B); limit = the sum of the stage times,")
    print("  i.e. 1/(1/aes + 1/hash + 1/zfec) in plaintext MB/s; ratio = limit time / codec time.")
    failed = False
    for line in target["lines"]:
        verdict = "PASS" if line["ratio"] >= TARGET_RATIO else "FAIL"
        failed |= verdict == "FAIL"
        print(f"  {line['label']}:")
        print(f"    {line['aes_label']:<30} {line['aes'] * 1e3:7.3f} ms  "
              f"{_mbs(line['aes']):8,.0f} MB/s")
        print(f"    {line['hash_label']:<30} {line['hash'] * 1e3:7.3f} ms  "
              f"{_mbs(line['hash']):8,.0f} MB/s")
        print(f"    {line['zfec_label']:<30} {line['zfec'] * 1e3:7.3f} ms  "
              + (f"{_mbs(line['zfec']):8,.0f} MB/s" if line["zfec"] > 1e-5 else
                 "    (no-op: data shares need no decoding)"))
        print(f"    {'limit (sum)':<30} {line['limit'] * 1e3:7.3f} ms  "
              f"{_mbs(line['limit']):8,.0f} MB/s")
        print(f"    {'codec':<30} {line['codec'] * 1e3:7.3f} ms  {_mbs(line['codec']):8,.0f} MB/s"
              f"   ratio {line['ratio']:.0%}  {verdict}")
    print(f"  pipeline bench took {time.perf_counter() - started:.1f} s")
    return 1 if failed else 0


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    sys.exit(main())
