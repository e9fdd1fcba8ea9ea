"""videobatch: manifest of prompts -> grok-imagine-video jobs -> verified MP4s and a Parquet ledger."""

__version__ = "0.1.0"
