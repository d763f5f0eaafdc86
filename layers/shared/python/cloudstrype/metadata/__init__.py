"""Metadata: tables declared once, one engine interface, two engines (SQLite, DynamoDB).

Domain modules own their tables (`schema.table(...)` at import) and wrap them in a store class of
their aggregate with dataclasses in and out; only `sqlite.py` and `dynamodb.py` import a database.
"""
