"""The dependency layer's local (Docker-free) bundling and the function settings helper.

Bundling is exercised for real through CDK (jsii calls back into `PipInstallLocally`), with a
stand-in for pip that records its arguments instead of downloading anything.
"""
from __future__ import annotations

import json
import re
import sys
import textwrap
from pathlib import Path

import pytest

from tests.infra.conftest import REPO

FAKE_PIP = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    args = sys.argv[1:]
    if "FAIL" in Path(args[args.index("--requirement") + 1]).read_text():
        sys.exit("no matching distribution")
    target = Path(args[args.index("--target") + 1])
    for package in ("chalice", "zfec", "botocore", "boto3", "s3transfer"):
        (target / package).mkdir(parents=True, exist_ok=True)
        (target / package / "__init__.py").write_text("")
    (target / "botocore-1.0.dist-info").mkdir()
    (target / "chalice-1.0.dist-info").mkdir()
    (target / "pip-arguments.json").write_text(json.dumps(args))
""")


def _requirement_names() -> set[str]:
    names = set()
    for line in (REPO / "layers" / "dependencies" / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(re.split(r"[\[<>=!~; ]", line, maxsplit=1)[0].lower())
    return names


def test_requirements_list_the_runtime_dependencies_but_not_the_sdk():
    names = _requirement_names()
    assert {"chalice", "pynamodb", "pyjwt", "cryptography", "requests", "requests-oauthlib",
            "zfec"} <= names
    assert not names & {"boto3", "botocore"}  # the Lambda runtime provides them
    assert not names & {"aws-cdk-lib", "moto", "pytest"}  # build and test tools stay out


@pytest.fixture
def bundled(tmp_path):
    """Synthesize a layer from a requirements folder with bundling on; returns the output."""
    import aws_cdk as cdk
    from aws_cdk import aws_lambda as lambda_

    from infra.constructs.layers import dependencies_code

    fake_pip = tmp_path / "fake_pip.py"
    fake_pip.write_text(FAKE_PIP)

    def bundle(requirements: str) -> Path:
        source = tmp_path / "requirements"
        source.mkdir()
        (source / "requirements.txt").write_text(requirements)
        outdir = tmp_path / "cdk.out"
        stack = cdk.Stack(cdk.App(outdir=str(outdir)), "LayerOnly")
        lambda_.LayerVersion(stack, "Dependencies", code=dependencies_code(
            source, pip=[sys.executable, str(fake_pip)]))
        (python_dir,) = outdir.glob("asset.*/python")
        return python_dir

    return bundle


def test_local_bundling_installs_lambda_wheels_into_python(bundled):
    python_dir = bundled("chalice\nzfec\n")
    args = json.loads((python_dir / "pip-arguments.json").read_text())
    assert args[:2] == ["install", "--requirement"]
    assert args[args.index("--platform") + 1] == "manylinux2014_x86_64"
    assert args[args.index("--python-version") + 1] == "3.11"
    assert args[args.index("--implementation") + 1] == "cp"
    assert "--only-binary=:all:" in args
    assert args[args.index("--target") + 1].endswith("/python")
    assert Path(args[args.index("--requirement") + 1]).read_text() == "chalice\nzfec\n"


def test_local_bundling_leaves_the_aws_sdk_to_the_runtime(bundled):
    python_dir = bundled("chalice\n")
    present = {p.name for p in python_dir.iterdir()}
    assert {"chalice", "zfec", "chalice-1.0.dist-info"} <= present
    assert not present & {"botocore", "boto3", "s3transfer", "botocore-1.0.dist-info"}


def test_a_failing_pip_stops_synthesis_with_its_output(bundled):
    with pytest.raises(Exception, match="no matching distribution"):
        bundled("FAIL\n")


def test_settings_environment_refuses_secrets_and_unknown_names():
    from cloudstrype.settings import Settings

    from infra.constructs.lambdas import settings_environment

    environment = settings_environment(
        Settings(), overrides={"CLOUDSTRYPE_DROPBOX_CLIENT_ID": "app-id"},
        extra={"CLOUDSTRYPE_OAUTH_SECRETS_ARN": "arn:secret"})
    assert environment["CLOUDSTRYPE_DROPBOX_CLIENT_ID"] == "app-id"
    assert environment["CLOUDSTRYPE_OAUTH_SECRETS_ARN"] == "arn:secret"
    assert "CLOUDSTRYPE_DROPBOX_CLIENT_SECRET" not in environment
    with pytest.raises(ValueError, match="secret"):
        settings_environment(Settings(), overrides={"CLOUDSTRYPE_DROPBOX_CLIENT_SECRET": "x"})
    with pytest.raises(ValueError, match="not a setting"):
        settings_environment(Settings(), overrides={"CLOUDSTRYPE_NO_SUCH_THING": "x"})
    with pytest.raises(ValueError, match="not a setting"):
        settings_environment(Settings(), overrides={"AWS_REGION": "eu-west-1"})
