"""Imports every module that declares tables, so `db.all_tables()` sees them all."""
