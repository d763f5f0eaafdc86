"""Imports every module that declares tables, so `db.all_tables()` sees them all."""
from cloudstrype import vault  # noqa: F401
from cloudstrype.pipeline import store  # noqa: F401
