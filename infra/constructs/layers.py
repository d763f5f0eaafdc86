"""The two Lambda layers every function uses: third-party dependencies and the shared library.

The dependency layer is built WITHOUT Docker: `PipInstallLocally` is the asset's local bundler and
runs pip on this machine, asking for manylinux2014 x86_64 wheels for CPython 3.13 (what the
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

# python3.13 (Amazon Linux 2023): every dependency publishes a CPython 3.13 x86_64 wheel
# (zfec, cffi; cryptography's abi3 wheel); python3.11 runs on Amazon Linux 2, deprecated in 2027.
PYTHON_RUNTIME = lambda_.Runtime.PYTHON_3_13
PYTHON_VERSION = "3.13"
# manylinux2014 wheels run on Amazon Linux 2023 too; x86_64 only (zfec publishes no arm64 wheel).
WHEEL_PLATFORM = "manylinux2014_x86_64"
ARCHITECTURE = lambda_.Architecture.X86_64

# The runtime ships the AWS SDK; a second botocore in the layer would shadow it and could
# mismatch the runtime's boto3, so pip's transitive copies are removed after the install.
# (backends/s3.py works with the runtime's botocore, old or new: it feature-detects.)
PROVIDED_BY_RUNTIME = ("boto3", "botocore", "s3transfer")
# Installers and build tools: nothing imports them at run time, and they weigh megabytes.
BUILD_TOOLS = ("pip", "setuptools", "wheel", "pkg_resources", "_distutils_hack")

# Never ship bytecode caches or editor droppings in an asset.
ASSET_EXCLUDES = ["**/__pycache__", "**/*.pyc", "**/.pytest_cache", "**/.DS_Store"]
# Where Lambda mounts layers: compiled code names its source there, for tracebacks.
LAYER_ROOT = "/opt/python"


def pip_install_arguments(requirements: str, target: str, *, no_deps: bool = False,
                          python_version: str = PYTHON_VERSION) -> list[str]:
    """The pip arguments that fetch Lambda-compatible wheels into `target` (no compiling)."""
    return ["install", "--requirement", requirements, "--target", target,
            "--platform", WHEEL_PLATFORM, "--implementation", "cp",
            "--python-version", python_version, "--only-binary=:all:",
            "--upgrade", "--no-compile", "--disable-pip-version-check", "--quiet",
            *(["--no-deps"] if no_deps else [])]


def remove_unneeded(site_dir: Path) -> None:
    """Drop what the runtime provides and the build tools, with their metadata."""
    unneeded = set(PROVIDED_BY_RUNTIME) | set(BUILD_TOOLS)
    for entry in site_dir.iterdir():
        name = entry.name.split("-", 1)[0].lower() if entry.name.endswith(".dist-info") \
            else entry.name.lower()
        if name in unneeded and entry.is_dir():
            shutil.rmtree(entry)
        elif entry.name == "distutils-precedence.pth":    # setuptools' import hook
            entry.unlink()


def runtime_python() -> str | None:
    """An interpreter of the functions' Python version, which alone can write their bytecode."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == PYTHON_VERSION:
        return sys.executable
    return shutil.which(f"python{PYTHON_VERSION}")


def compile_bytecode(directory: Path, python: str, source_root: str = LAYER_ROOT) -> None:
    """Write every module's bytecode next to it, as the runtime would on first import.

    Lambda cannot write to /opt or /var/task, so without this every cold start compiles every
    module again. Hash-based and unchecked: the runtime never compares it with the source (a
    zip's timestamps need not survive), and the content is immutable once deployed.
    """
    command = [python, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode",
               "unchecked-hash", "-d", source_root, str(directory)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"Compiling {directory} failed: {shlex.join(command)}\n"
                           f"{done.stdout}{done.stderr}")


def _compile_or_warn(directory: Path, python: str | None, source_root: str) -> None:
    if python is None:
        # The deployment still works, only its cold starts are slower.
        print(f"warning: no python{PYTHON_VERSION} here: {directory} ships without bytecode "
              "(install that Python, or bundle with Docker)", file=sys.stderr)
        return
    compile_bytecode(directory, python, source_root)


@jsii.implements(ILocalBundling)
class PipInstallLocally:
    """Local bundler of the dependency layer: requirements.txt (with dependencies) and
    requirements-no-deps.txt (without: chalice's command line needs click, pyyaml, inquirer,
    pip, setuptools and wheel, which its runtime module `chalice.app` does not) into
    `<output>/python`, less what the runtime provides and the build tools, precompiled."""

    def __init__(self, source_dir: Path, pip: Sequence[str] = (sys.executable, "-m", "pip"),
                 python: str | None = None, python_version: str = PYTHON_VERSION):
        self.source_dir = Path(source_dir)
        self.pip = list(pip)
        # The bench builds the layer for the Python it runs on instead (bench/cold_start.py).
        self.python_version = python_version
        self.python = python or runtime_python()

    def commands(self, output_dir: str) -> list[list[str]]:
        target = str(Path(output_dir) / "python")
        commands = [self.pip + pip_install_arguments(
            str(self.source_dir / "requirements.txt"), target,
            python_version=self.python_version)]
        no_deps = self.source_dir / "requirements-no-deps.txt"
        if no_deps.exists():
            commands.append(self.pip + pip_install_arguments(
                str(no_deps), target, no_deps=True, python_version=self.python_version))
        return commands

    # jsii fills the keyword-only parameters from the BundlingOptions struct.
    def try_bundle(self, output_dir: str, *, image: DockerImage | None = None) -> bool:
        if not self._pip_available():
            return False  # let CDK try the Docker image instead
        for command in self.commands(output_dir):
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"Bundling the dependency layer failed: "
                                   f"{shlex.join(command)}\n{done.stdout}{done.stderr}")
        site = Path(output_dir) / "python"
        remove_unneeded(site)
        _compile_or_warn(site, self.python, LAYER_ROOT)
        return True

    def _pip_available(self) -> bool:
        return shutil.which(self.pip[0]) is not None or Path(self.pip[0]).exists()


@jsii.implements(ILocalBundling)
class CopyAndCompile:
    """Local bundler of pure-Python code (the shared layer): a copy without caches, with
    bytecode for the runtime."""

    def __init__(self, source_dir: Path, source_root: str, python: str | None = None):
        self.source_dir = Path(source_dir)
        self.source_root = source_root
        self.python = python or runtime_python()

    def try_bundle(self, output_dir: str, *, image: DockerImage | None = None) -> bool:
        copy_source(self.source_dir, Path(output_dir))
        _compile_or_warn(Path(output_dir), self.python, self.source_root)
        return True


def copy_source(source: Path, target: Path) -> None:
    shutil.copytree(source, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns(
        "__pycache__", "*.pyc", ".pytest_cache", ".DS_Store"))


def _docker_compile(source_root: str) -> str:
    return ("python -m compileall -q -j 0 --invalidation-mode unchecked-hash "
            f"-d {source_root} /asset-output")


def dependencies_code(source_dir: Path = DEPENDENCIES_DIR,
                      pip: Sequence[str] | None = None,
                      python: str | None = None) -> lambda_.Code:
    """The layer asset: the requirements bundled into python/ by `PipInstallLocally`."""
    unneeded = PROVIDED_BY_RUNTIME + BUILD_TOOLS
    docker_script = " && ".join([
        shlex.join(["pip"] + pip_install_arguments("requirements.txt", "/asset-output/python")),
        "if [ -f requirements-no-deps.txt ]; then " + shlex.join(["pip"] + pip_install_arguments(
            "requirements-no-deps.txt", "/asset-output/python", no_deps=True)) + "; fi",
        "cd /asset-output/python",
        "rm -rf distutils-precedence.pth " +
        " ".join(f"{name} {name}-*.dist-info" for name in unneeded),
        _docker_compile(LAYER_ROOT).replace("/asset-output", "/asset-output/python"),
    ])
    return lambda_.Code.from_asset(str(source_dir), bundling=BundlingOptions(
        image=PYTHON_RUNTIME.bundling_image,
        command=["bash", "-c", docker_script],
        local=PipInstallLocally(source_dir, *([pip] if pip else []), python=python),
    ))


def shared_code(source_dir: Path = SHARED_DIR, python: str | None = None) -> lambda_.Code:
    """The shared layer asset: layers/shared/ (already under python/), precompiled."""
    return lambda_.Code.from_asset(str(source_dir), exclude=ASSET_EXCLUDES,
                                   bundling=BundlingOptions(
        image=PYTHON_RUNTIME.bundling_image,
        command=["bash", "-c", "cp -r /asset-input/. /asset-output/ && " +
                 _docker_compile("/opt")],
        local=CopyAndCompile(source_dir, "/opt", python),
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
                        "(layers/dependencies/requirements*.txt)",
        )
        # layers/shared/ already has the python/ prefix Lambda puts on sys.path.
        self.shared = lambda_.LayerVersion(
            self, "Shared",
            code=shared_code(),
            compatible_runtimes=[PYTHON_RUNTIME],
            compatible_architectures=[ARCHITECTURE],
            description="Cloudstrype shared library (layers/shared/python/cloudstrype)",
        )

    @property
    def all(self) -> list[lambda_.ILayerVersion]:
        return [self.shared, self.dependencies]
