"""Cold-start benchmark: each function's handler module imported as Lambda imports it.

Run: ``python -m bench --only cold-start`` (``-- --repeat N --keep DIR``).

The functions' files are laid out as Lambda lays them out, in a temporary folder:

- ``opt/python``: the dependency layer, built by the stack's own bundler (pip, wheels for the
  Lambda platform, chalice without its command line's dependencies, no boto3/botocore, no build
  tools, bytecode written), then the shared layer over it (copied, bytecode written) — Lambda
  extracts the layers into /opt in that order;
- ``runtime``: the AWS SDK Lambda's runtime provides (boto3, botocore, s3transfer from this
  environment, as /var/runtime holds them);
- ``task-<service>``: the function code, functions/<service>/, precompiled the same way.

Each service's module ``app`` (every handler of a service, route or WebSocket or schedule, is an
attribute of it) is imported in a fresh ``python -I -S -B`` process (-B: nothing is written, as
/opt and /var/task are read-only in Lambda) whose path is Lambda's order (task, /opt/python,
runtime), with the settings a deployment sets; the import is timed inside
the process. The same runs again on a layout without bytecode, to show what precompiling saves.

The layer is built for the Python running the bench (bytecode is per version); deployed, it is
built for the functions' runtime (infra/constructs/layers.py). Target (issue 11): every handler
imports in < 150 ms on this machine, median of the runs.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "layers/shared/python"))

TARGET_MS = 150.0
RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer")

PROBE = """
import sys, time
sys.path[:0] = {path!r}
started = time.perf_counter()
import app
elapsed = (time.perf_counter() - started) * 1000
leaked = sorted(m for m in ("click", "yaml", "inquirer", "setuptools", "pip", "pkg_resources")
                if m in sys.modules)
print(f"{{elapsed:.2f}} {{','.join(leaked)}}")
"""


def _size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def build_layout(root: Path, bytecode: bool, services: list[str]) -> dict:
    from infra.constructs.layers import (
        DEPENDENCIES_DIR,
        LAYER_ROOT,
        SHARED_DIR,
        CopyAndCompile,
        PipInstallLocally,
        compile_bytecode,
        copy_source,
    )
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    opt = root / "opt"
    python = sys.executable if bytecode else None
    bundler = PipInstallLocally(DEPENDENCIES_DIR, python=python, python_version=version)
    if not bytecode:
        bundler.python = None
    # Without bytecode the bundler only warns: quiet here, the report says so.
    stderr, sys.stderr = sys.stderr, open(os.devnull, "w")
    try:
        bundler.try_bundle(str(opt))
        shared = CopyAndCompile(SHARED_DIR, "/opt", python)
        if not bytecode:
            shared.python = None
        shared.try_bundle(str(opt))
    finally:
        sys.stderr.close()
        sys.stderr = stderr
    runtime = root / "runtime"
    runtime.mkdir()
    import boto3
    site = Path(boto3.__file__).resolve().parents[1]
    for name in RUNTIME_PACKAGES:
        (runtime / name).symlink_to(site / name)
    tasks = {}
    for service in services:
        task = root / f"task-{service}"
        copy_source(REPO / "functions" / service, task)
        if bytecode:
            compile_bytecode(task, sys.executable, "/var/task")
        tasks[service] = task
    return {"opt": opt, "runtime": runtime, "tasks": tasks,
            "layer_mb": _size_mb(opt / "python"), "layer_root": LAYER_ROOT}


def deployed_environment() -> dict[str, str]:
    """What the CDK sets (no network is used by an import; the values need only be there)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDSTRYPE_", "AWS_"))}
    env.update(AWS_REGION="us-east-1", AWS_DEFAULT_REGION="us-east-1",
               AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
               CLOUDSTRYPE_METADATA_ENGINE="dynamodb", CLOUDSTRYPE_IDENTITY_PROVIDER="cognito",
               CLOUDSTRYPE_KEY_PROTECTOR="kms", CLOUDSTRYPE_KMS_KEY_ID="bench-key",
               CLOUDSTRYPE_USER_POOL_ID="us-east-1_bench",
               CLOUDSTRYPE_PUBLIC_URL="https://api.example.org/prod")
    return env


def time_imports(layout: dict, service: str, repeat: int) -> tuple[list[float], str]:
    path = [str(layout["tasks"][service]), str(layout["opt"] / "python"),
            str(layout["runtime"])]
    samples, leaked = [], ""
    for _ in range(repeat):
        done = subprocess.run([sys.executable, "-I", "-S", "-B", "-c", PROBE.format(path=path)],
                              capture_output=True, text=True, env=deployed_environment(),
                              cwd=layout["tasks"][service], timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"importing the {service} handler failed:\n{done.stderr}")
        elapsed, _, leaked = done.stdout.strip().partition(" ")
        samples.append(float(elapsed))
    return samples, leaked


def handlers_of(service: str) -> list[str]:
    import functions
    app = functions.load_app(service)
    names = {"app.app"} if app.routes_table() else set()
    names |= {c.handler_string for c in getattr(app, "websocket_handlers", {}).values()}
    names |= {s.handler_string for s in getattr(app, "event_sources", [])}
    return sorted(names)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench --only cold-start")
    parser.add_argument("--repeat", type=int, default=7, help="fresh processes per handler")
    parser.add_argument("--keep", type=Path, help="build the layouts here and keep them")
    args = parser.parse_args(argv)
    import functions
    services = functions.available_services()
    root = args.keep or Path(tempfile.mkdtemp(prefix="cold-start-"))
    try:
        layouts = {}
        for bytecode in (True, False):
            folder = root / ("precompiled" if bytecode else "source-only")
            if folder.exists():
                shutil.rmtree(folder)
            folder.mkdir(parents=True)
            layouts[bytecode] = build_layout(folder, bytecode, services)
        layer = layouts[True]["opt"] / "python"
        tools = sorted(p.name for p in layer.iterdir() if p.name.split("-")[0].lower() in
                       ("pip", "setuptools", "wheel", "click", "yaml", "inquirer", "boto3",
                        "botocore", "s3transfer"))
        print(f"Python {sys.version.split()[0]}; layers (dependencies + shared) "
              f"{layouts[True]['layer_mb']:.1f} MB with bytecode, "
              f"{layouts[False]['layer_mb']:.1f} MB without; build tools or SDK in the layer: "
              f"{', '.join(tools) or 'none'}")
        print(f"{'service':<11} {'handlers':<44} {'precompiled':>17} {'no bytecode':>17}")
        print(f"{'':<11} {'':<44} {'median':>8} {'min':>8} {'median':>8} {'min':>8}")
        missed = bool(tools)
        for service in services:
            fast, leaked = time_imports(layouts[True], service, args.repeat)
            slow, _ = time_imports(layouts[False], service, args.repeat)
            median = statistics.median(fast)
            missed |= median >= TARGET_MS or bool(leaked)
            flag = "" if median < TARGET_MS else f"  (target < {TARGET_MS:.0f} ms missed)"
            if leaked:
                flag += f"  (imported {leaked})"
            print(f"{service:<11} {', '.join(handlers_of(service))[:44]:<44} "
                  f"{median:8.1f} {min(fast):8.1f} {statistics.median(slow):8.1f} "
                  f"{min(slow):8.1f}{flag}")
        print(f"ms to import the handler module in a fresh process, {args.repeat} runs each; "
              f"target < {TARGET_MS:.0f} ms (median, precompiled)")
        return 1 if missed else 0
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
