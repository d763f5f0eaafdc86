"""The pipeline benchmark still runs and prints every row (a smoke test, not a speed test)."""
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import pipeline  # noqa: E402


def test_pipeline_bench_smoke(capsys):
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    status = pipeline.main(["--repeat", "1", "--rounds", "2"])
    out = capsys.readouterr().out
    assert status in (0, 1)
    assert ("ratio" in out) and out.count("PASS") + out.count("FAIL") == 3
    for encryption in pipeline.ENCRYPTIONS:
        for durability in pipeline.DURABILITIES:
            assert any(line.split()[:2] == [encryption, durability]
                       for line in out.splitlines() if line.strip())
    for stage in ("AES-256-GCM encrypt", "SHA-256 4 MiB", "MD5 4 MiB", "zfec encode rs(4,2)"):
        assert stage in out
    if affinity is not None:
        assert os.sched_getaffinity(0) == affinity      # unpinned afterwards
