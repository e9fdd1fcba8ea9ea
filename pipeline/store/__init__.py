"""Durable state: the only code that writes the ledger (journal + Parquet parts), the runs table,
the lock, and any file replaced atomically; schema.py holds the column layouts and job states."""
