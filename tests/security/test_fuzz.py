"""A bounded schemathesis run against a running stack's /api/openapi.json.

The server is held to its own contract: no 5xx, no status the document does not list, no
schema-valid request refused for its shape (tests/security/fuzz_hooks.py says which refusals
depend on the account's state instead), and every answer in a documented content type. The run
is bounded (examples per operation, a request timeout, a hard wall-clock limit), so it fits the
test command on a small machine; the seed is printed with any failure, for `st run --seed`.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO, Api, cli, login, start_stack, unique

# A fixed seed keeps the test command repeatable (CI judges a submission by one run); set
# CLOUDSTRYPE_FUZZ_SEED=random to explore new inputs, or another number to replay one.
SEED = os.environ.get("CLOUDSTRYPE_FUZZ_SEED", "20261201")

CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "positive_data_accepted")
# Logging out would end the very sign-in the run uses; it takes no input to fuzz, and
# tests/foundation covers it.
EXCLUDED = ("/api/auth/logout",)
# 100 examples per operation took 83 s on 2 cores (200 took 143 s, and 288 s on a slower VM).
EXAMPLES_PER_OPERATION = 100
WALL_CLOCK_SECONDS = 300
TOOL_CRASH = "AST constructor recursion depth mismatch"


@pytest.fixture(scope="module")
def fuzz_stack(tmp_path_factory):
    stack = start_stack(tmp_path_factory.mktemp("fuzz"))
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def admin_token(fuzz_stack):
    """An admin (so the admin routes are fuzzed past their 403) with two local storages (so
    chunk and file writes reach the pipeline)."""
    username = unique("fuzz")
    done = cli("admin", "create", username, "--email", f"{username}@example.org",
               "--password", "Fuzz3rPassword", "--data-dir", str(fuzz_stack.data_dir))
    assert done.returncode == 0, done.stderr
    token = login(Api(fuzz_stack.url), username, "Fuzz3rPassword")["access_token"]
    api = Api(fuzz_stack.url, token)
    for name in ("fuzz-a", "fuzz-b"):
        added = api.post("/api/cloud/storages",
                         json={"kind": "local", "name": name, "config": {"path": name}})
        assert added.status_code == 201, added.text
    return token


@pytest.mark.timeout(2 * WALL_CLOCK_SECONDS + 60)      # two attempts (see below), then the stack
def test_the_api_keeps_its_openapi_contract_under_fuzzing(fuzz_stack, admin_token, tmp_path):
    command = [
        str(Path(sys.executable).parent / "st"), "run", f"{fuzz_stack.url}/api/openapi.json",
        "--checks", ",".join(CHECKS),
        "--max-examples", str(EXAMPLES_PER_OPERATION),
        "--workers", "2", "--request-timeout", "35", "--no-color",
        "--generation-database", "none",
        *(["--seed", SEED] if SEED != "random" else []),
        "--header", f"Authorization: Bearer {admin_token}",
        "--report", "junit", "--report-dir", str(tmp_path / "report"),
        *[arg for path in EXCLUDED for arg in ("--exclude-path", path)],
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.security.fuzz_hooks",
           "PYTHONPATH": str(REPO)}
    for _attempt in range(2):
        try:
            run = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env,
                                 timeout=WALL_CLOCK_SECONDS)
        except subprocess.TimeoutExpired as exc:
            pytest.fail(f"the fuzz run took over {WALL_CLOCK_SECONDS}s:\n"
                        f"{(exc.stdout or b'')[-4000:]}")
        output = run.stdout + run.stderr
        # CPython 3.11 can raise this from `ast` when two of the tool's worker threads compile
        # at once: a crash of the fuzzer, not a finding about the API (fuzz_hooks parses one at
        # a time, which should prevent it). Run once more then.
        if not (run.returncode and TOOL_CRASH in output and "FAILURES" not in output):
            break
    assert run.returncode == 0, f"schemathesis found failures:\n{output[-20000:]}"
    # It really ran: every operation but the excluded one was tested.
    assert "Tested: " in output, output[-3000:]
