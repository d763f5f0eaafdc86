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
    for package in ("chalice", "zfec", "botocore", "boto3", "s3transfer", "pip", "setuptools",
                    "wheel", "_distutils_hack"):
        (target / package).mkdir(parents=True, exist_ok=True)
        (target / package / "__init__.py").write_text("VALUE = 1\\n")
    for dist in ("botocore-1.0", "chalice-1.0", "pip-24.0", "setuptools-70.0"):
        (target / f"{dist}.dist-info").mkdir(exist_ok=True)
    (target / "distutils-precedence.pth").write_text("import _distutils_hack")
    calls = target / "pip-calls.json"
    done = json.loads(calls.read_text()) if calls.exists() else []
    calls.write_text(json.dumps(done + [args]))
""")


def _requirement_names(file: str = "requirements.txt") -> set[str]:
    names = set()
    for line in (REPO / "layers" / "dependencies" / file).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(re.split(r"[\[<>=!~; ]", line, maxsplit=1)[0].lower())
    return names


def test_requirements_list_the_runtime_dependencies_but_not_the_sdk():
    names = _requirement_names() | _requirement_names("requirements-no-deps.txt")
    assert {"chalice", "pynamodb", "pyjwt", "cryptography", "requests", "requests-oauthlib",
            "zfec"} <= names
    assert not names & {"boto3", "botocore"}  # the Lambda runtime provides them
    assert not names & {"aws-cdk-lib", "moto", "pytest"}  # build and test tools stay out
    # chalice's command line (click, pyyaml, inquirer, pip, setuptools...) is not installed.
    assert _requirement_names("requirements-no-deps.txt") == {"chalice"}


@pytest.fixture
def bundled(tmp_path):
    """Synthesize a layer from a requirements folder with bundling on; returns the output."""
    import aws_cdk as cdk
    from aws_cdk import aws_lambda as lambda_

    from infra.constructs.layers import dependencies_code

    fake_pip = tmp_path / "fake_pip.py"
    fake_pip.write_text(FAKE_PIP)

    def bundle(requirements: str, no_deps: str | None = None, python=sys.executable) -> Path:
        source = tmp_path / "requirements"
        source.mkdir()
        (source / "requirements.txt").write_text(requirements)
        if no_deps is not None:
            (source / "requirements-no-deps.txt").write_text(no_deps)
        outdir = tmp_path / "cdk.out"
        stack = cdk.Stack(cdk.App(outdir=str(outdir)), "LayerOnly")
        lambda_.LayerVersion(stack, "Dependencies", code=dependencies_code(
            source, pip=[sys.executable, str(fake_pip)], python=python))
        (python_dir,) = outdir.glob("asset.*/python")
        return python_dir

    return bundle


def _pip_calls(python_dir: Path) -> list[list[str]]:
    return json.loads((python_dir / "pip-calls.json").read_text())


def test_local_bundling_installs_lambda_wheels_into_python(bundled):
    from infra.constructs.layers import PYTHON_VERSION
    python_dir = bundled("zfec\n", no_deps="chalice\n")
    with_deps, without = _pip_calls(python_dir)
    for args in (with_deps, without):
        assert args[:2] == ["install", "--requirement"]
        assert args[args.index("--platform") + 1] == "manylinux2014_x86_64"
        assert args[args.index("--python-version") + 1] == PYTHON_VERSION
        assert args[args.index("--implementation") + 1] == "cp"
        assert "--only-binary=:all:" in args
        assert args[args.index("--target") + 1].endswith("/python")
    assert Path(with_deps[with_deps.index("--requirement") + 1]).read_text() == "zfec\n"
    assert "--no-deps" not in with_deps
    assert Path(without[without.index("--requirement") + 1]).read_text() == "chalice\n"
    assert "--no-deps" in without


def test_local_bundling_leaves_out_the_aws_sdk_and_the_build_tools(bundled):
    python_dir = bundled("chalice\n")
    present = {p.name for p in python_dir.iterdir()}
    assert {"chalice", "zfec", "chalice-1.0.dist-info"} <= present
    assert not present & {"botocore", "boto3", "s3transfer", "botocore-1.0.dist-info", "pip",
                          "setuptools", "wheel", "_distutils_hack", "pip-24.0.dist-info",
                          "setuptools-70.0.dist-info", "distutils-precedence.pth"}


def _unchecked_hash_pyc(source: Path) -> Path:
    tag = sys.implementation.cache_tag
    pyc = source.parent / "__pycache__" / f"{source.stem}.{tag}.pyc"
    header = pyc.read_bytes()[:16]
    assert int.from_bytes(header[4:8], "little") == 0b01, pyc  # hash-based, source unchecked
    return pyc


def test_the_dependency_layer_ships_bytecode_naming_opt(bundled):
    import marshal
    python_dir = bundled("chalice\n")
    sources = list(python_dir.rglob("*.py"))
    assert sources
    for source in sources:
        pyc = _unchecked_hash_pyc(source)
        code = marshal.loads(pyc.read_bytes()[16:])
        relative = source.relative_to(python_dir).as_posix()
        assert code.co_filename == f"/opt/python/{relative}"


def test_without_an_interpreter_of_the_runtime_version_it_warns_and_ships_source(
        bundled, monkeypatch, capfd):
    from infra.constructs import layers
    monkeypatch.setattr(layers, "runtime_python", lambda: None)
    python_dir = bundled("chalice\n", python=None)
    assert (python_dir / "chalice" / "__init__.py").is_file()
    assert not list(python_dir.rglob("*.pyc"))
    assert "ships without bytecode" in capfd.readouterr().err


def test_a_failing_pip_stops_synthesis_with_its_output(bundled):
    with pytest.raises(Exception, match="no matching distribution"):
        bundled("FAIL\n")


def test_the_shared_layer_is_copied_without_caches_and_precompiled(tmp_path):
    import aws_cdk as cdk
    from aws_cdk import aws_lambda as lambda_

    from infra.constructs.layers import shared_code
    source = tmp_path / "shared"
    (source / "python" / "pkg" / "__pycache__").mkdir(parents=True)
    (source / "python" / "pkg" / "__init__.py").write_text("VALUE = 2\n")
    (source / "python" / "pkg" / "__pycache__" / "stale.cpython-311.pyc").write_bytes(b"old")
    outdir = tmp_path / "cdk.out"
    stack = cdk.Stack(cdk.App(outdir=str(outdir)), "SharedOnly")
    lambda_.LayerVersion(stack, "Shared", code=shared_code(source, python=sys.executable))
    (package,) = outdir.glob("asset.*/python/pkg")
    assert not (package / "__pycache__" / "stale.cpython-311.pyc").exists()
    _unchecked_hash_pyc(package / "__init__.py")


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
