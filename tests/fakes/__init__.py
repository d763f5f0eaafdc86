"""Fake cloud providers for tests: real HTTP servers on 127.0.0.1 speaking each provider's
documented API (the parts Cloudstrype uses), its OAuth2 token endpoint, and switches that
inject failures. See base.FakeProvider; tests/backends/conftest.py starts them as fixtures.
"""
from .base import CLIENT_ID, CLIENT_SECRET, FakeProvider
from .box import FakeBox
from .dropbox import FakeDropbox
from .gdrive import FakeGoogleDrive
from .onedrive import FakeOneDrive

FAKES: dict[str, type[FakeProvider]] = {
    "dropbox": FakeDropbox,
    "gdrive": FakeGoogleDrive,
    "onedrive": FakeOneDrive,
    "box": FakeBox,
}

__all__ = ["CLIENT_ID", "CLIENT_SECRET", "FAKES", "FakeBox", "FakeDropbox", "FakeGoogleDrive",
           "FakeOneDrive", "FakeProvider"]
