"""The member program on its own: sizes, its folder, and staying free of server code."""
from __future__ import annotations

import argparse
import subprocess
import sys

import pytest
from cloudstrype_client.member import parse_size

from tests.support import REPO


@pytest.mark.parametrize("text, size", [
    ("20GB", 20 * 10**9), ("500MB", 500 * 10**6), ("1.5TiB", int(1.5 * 2**40)),
    ("2gib", 2 * 2**30), ("1048576", 2**20), (" 3 GB ", 3 * 10**9),
])
def test_sizes_are_read_as_written(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "GB", "20XB", "-5GB", "1KB", "lots"])
def test_unreadable_or_tiny_sizes_say_what_to_write(text):
    with pytest.raises(argparse.ArgumentTypeError) as refused:
        parse_size(text)
    assert "MB" in str(refused.value)


def test_the_member_program_loads_no_server_code():
    probe = ("import sys, cloudstrype_client.cli as cli, cloudstrype_client.member, websockets, "
             "requests; cli.build_parser().parse_args(['array', '--dir', 'x', '--size', '1GB']); "
             "bad = sorted({n.split('.')[0] for n in sys.modules} & "
             "{'cloudstrype', 'infra', 'functions', 'boto3', 'botocore', 'aws_cdk', 'chalice'}); "
             "print(bad)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          cwd=REPO / "clients", timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_one_folder_serves_one_member_program(members, user):
    first = members.start(user)
    second = members.start(user, name=first.name + "-twin", folder=first.folder, wait=False)
    assert second.process.wait(timeout=30) == 2
    assert "Another member program is using" in second.log()
    assert first.alive()
