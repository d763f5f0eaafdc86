"""The two Lambda layers every function uses: third-party dependencies and the shared library.

The dependency layer is built WITHOUT Docker: `PipInstallLocally` is the asset's local bundler and
runs pip on this machine, asking for manylinux2014 x86_64 wheels for CPython 3.11 (what the
functions run on), so nothing is compiled here and the result matches the Lambda platform. The
Docker command stays as the fallback CDK uses only when the local bundler declines (no pip).

Synthesis without bundling (the tests) sets the context `aws:cdk:bundling-stacks` to `[]`; the
asset is then the unbundled source folder and nothing is installed.
"""
from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Sequence

import jsii
from aws_cdk import BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

REPO = Path(__file__).resolve().parents[2]
DEPENDENCIES_DIR = REPO / "layers" / "dependencies"
SHARED_DIR = REPO / "layers" / "shared"

PYTHON_RUNTIME = lambda_.Runtime.PYTHON_3_11
PYTHON_VERSION = "3.11"
# Lambda's python3.11 runs on Amazon Linux 2 (glibc 2.26): manylinux2014 wheels, x86_64 only
# (zfec publishes no arm64 wheel).
WHEEL_PLATFORM = "manylinux2014_x86_64"
ARCHITECTURE = lambda_.Architecture.X86_64

# The runtime ships the AWS SDK; a second botocore in the layer would shadow it and could
# mismatch the runtime's boto3, so pip's transitive copies are removed after the install.
PROVIDED_BY_RUNTIME = ("boto3", "botocore", "s3transfer")

# Never ship bytecode caches or editor droppings in an asset.
ASSET_EXCLUDES = ["**/__pycache__", "**/*.pyc", "**/.pytest_cache", "**/.DS_Store"]


def pip_install_arguments(requirements: str, target: str) -> list[str]:
    """The pip arguments that fetch Lambda-compatible wheels into `target` (no compiling)."""
    return ["install", "--requirement", requirements, "--target", target,
            "--platform", WHEEL_PLATFORM, "--implementation", "cp",
            "--python-version", PYTHON_VERSION, "--only-binary=:all:",
            "--upgrade", "--no-compile", "--disable-pip-version-check", "--quiet"]


def remove_runtime_provided(site_dir: Path) -> None:
    for entry in site_dir.iterdir():
        name = entry.name.split("-", 1)[0].lower() if entry.name.endswith(".dist-info") \
            else entry.name.lower()
        if name in PROVIDED_BY_RUNTIME and entry.is_dir():
            shutil.rmtree(entry)


@jsii.implements(ILocalBundling)
class PipInstallLocally:
    """Local bundler: `pip install -r requirements.txt` into `<output>/python` for Lambda."""

    def __init__(self, source_dir: Path, pip: Sequence[str] = (sys.executable, "-m", "pip")):
        self.source_dir = Path(source_dir)
        self.pip = list(pip)

    def command(self, output_dir: str) -> list[str]:
        return self.pip + pip_install_arguments(str(self.source_dir / "requirements.txt"),
                                                str(Path(output_dir) / "python"))

    # jsii fills the keyword-only parameters from the BundlingOptions struct.
    def try_bundle(self, output_dir: str, *, image: DockerImage | None = None) -> bool:
        if not self._pip_available():
            return False  # let CDK try the Docker image instead
        command = self.command(output_dir)
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"Bundling the dependency layer failed: {shlex.join(command)}\n"
                               f"{done.stdout}{done.stderr}")
        remove_runtime_provided(Path(output_dir) / "python")
        return True

    def _pip_available(self) -> bool:
        return shutil.which(self.pip[0]) is not None or Path(self.pip[0]).exists()


def dependencies_code(source_dir: Path = DEPENDENCIES_DIR,
                      pip: Sequence[str] | None = None) -> lambda_.Code:
    """The layer asset: requirements.txt bundled into python/ by `PipInstallLocally`."""
    docker_script = " && ".join([
        shlex.join(["pip"] + pip_install_arguments("requirements.txt", "/asset-output/python")),
        "cd /asset-output/python",
        "rm -rf " + " ".join(f"{name} {name}-*.dist-info" for name in PROVIDED_BY_RUNTIME),
    ])
    return lambda_.Code.from_asset(str(source_dir), bundling=BundlingOptions(
        image=PYTHON_RUNTIME.bundling_image,
        command=["bash", "-c", docker_script],
        local=PipInstallLocally(source_dir, *([pip] if pip else [])),
    ))


class FunctionLayers(Construct):
    """`dependencies` (pip-installed wheels) and `shared` (the cloudstrype package)."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.dependencies = lambda_.LayerVersion(
            self, "Dependencies",
            code=dependencies_code(),
            compatible_runtimes=[PYTHON_RUNTIME],
            compatible_architectures=[ARCHITECTURE],
            description="Cloudstrype third-party dependencies "
                        "(layers/dependencies/requirements.txt)",
        )
        # layers/shared/ already has the python/ prefix Lambda puts on sys.path.
        self.shared = lambda_.LayerVersion(
            self, "Shared",
            code=lambda_.Code.from_asset(str(SHARED_DIR), exclude=ASSET_EXCLUDES),
            compatible_runtimes=[PYTHON_RUNTIME],
            compatible_architectures=[ARCHITECTURE],
            description="Cloudstrype shared library (layers/shared/python/cloudstrype)",
        )

    @property
    def all(self) -> list[lambda_.ILayerVersion]:
        return [self.shared, self.dependencies]
