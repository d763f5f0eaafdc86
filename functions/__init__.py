"""The services: one chalice app each, under functions/<name>/app.py.

This list is the one place the local gateway, the CDK stack and the tests learn which services
exist; each app's routes are read from the app itself.
"""
from __future__ import annotations

import importlib
from pathlib import Path

SERVICES = ("meta", "auth", "cloud", "chunk", "array", "filesystem")


def available_services() -> list[str]:
    here = Path(__file__).parent
    return [name for name in SERVICES if (here / name / "app.py").exists()]


def load_app(name: str):
    return importlib.import_module(f"functions.{name}.app").app


def websocket_handlers() -> dict:
    """Route key ($connect, $default, $disconnect) -> the Lambda handler, across services."""
    handlers = {}
    for name in available_services():
        module = importlib.import_module(f"functions.{name}.app")
        for route_key, config in getattr(module.app, "websocket_handlers", {}).items():
            handlers[route_key] = getattr(module, config.handler_string.rsplit(".", 1)[-1])
    return handlers


def scheduled_handlers() -> dict:
    """Name -> the Lambda handler of every chalice `@app.schedule` job, across services."""
    from chalice.app import ScheduledEventConfig

    handlers = {}
    for name in available_services():
        module = importlib.import_module(f"functions.{name}.app")
        for source in getattr(module.app, "event_sources", []):
            if isinstance(source, ScheduledEventConfig):
                handlers[f"{name}.{source.name}"] = getattr(
                    module, source.handler_string.rsplit(".", 1)[-1])
    return handlers
