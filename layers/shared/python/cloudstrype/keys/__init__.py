"""Users' keys: where their protected form is stored, and what protects them (KMS or a local
master key file)."""
