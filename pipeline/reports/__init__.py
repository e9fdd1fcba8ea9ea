"""What a ledger and a run come to, for people and for machines: summary, status, gallery, metrics, notice."""
