"""The plan: manifest rows against the ledger, what a run would do with each and what it costs."""
