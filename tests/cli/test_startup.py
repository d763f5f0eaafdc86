"""The desktop commands start without loading what only some of them need: the array member
program (asyncio, websockets) only for `array`, tqdm only when progress bars are drawn, the
server side never. A `put` and a `get` really run, against the session's stack."""
from __future__ import annotations

import json
import subprocess
import sys
import uuid

HEAVY = ("asyncio", "websockets", "tqdm", "cloudstrype_client.member", "webbrowser",
         "cloudstrype", "infra", "boto3", "chalice")
PROBE = ("import atexit, json, sys\n"
         "heavy = {heavy!r}\n"
         "atexit.register(lambda: print(json.dumps(sorted(n for n in sys.modules\n"
         "    if n in heavy or n.split('.')[0] in heavy)), file=sys.stderr))\n"
         "from cloudstrype_client.cli import main\n"
         "sys.exit(main(sys.argv[1:]))\n")


def _run_probe(cli, *args: str) -> list[str]:
    """What of HEAVY the command `cloudstrype ARGS` had loaded when it ended."""
    done = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), *args],
                          capture_output=True, text=True, env=cli.env(), cwd=cli.home,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stderr.strip().splitlines()[-1])


def test_put_and_get_load_neither_the_member_program_nor_progress_bars(cli, tmp_path):
    folder = tmp_path / "few"
    folder.mkdir()
    for n in range(3):
        (folder / f"{n}.txt").write_text(f"file {n}\n")
    root = f"/startup-{uuid.uuid4().hex[:8]}"

    assert _run_probe(cli, "put", "-q", str(folder), root) == []
    assert _run_probe(cli, "put", "-q", str(folder), root) == []        # all skipped
    assert _run_probe(cli, "get", "-q", f"{root}/few", str(tmp_path / "back")) == []
    assert (tmp_path / "back" / "few" / "2.txt").read_text() == "file 2\n"
    assert _run_probe(cli, "ls", "-l", root) == []
