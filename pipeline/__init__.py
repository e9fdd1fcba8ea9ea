"""videobatch: manifest of prompts -> grok-imagine-video jobs -> verified MP4s and a Parquet ledger.

For orchestrators: `from pipeline import plan_batch, run_batch` (see pipeline/batch.py). They are
imported on first use, so `import pipeline` stays cheap.
"""

__version__ = "0.1.0"
__all__ = ["BatchSummary", "plan_batch", "run_batch"]


def __getattr__(name: str):
    if name in ("plan_batch", "run_batch"):
        # Lazy: on first use, so `import pipeline` (and every `import pipeline.x`) stays cheap.
        from pipeline import batch

        return getattr(batch, name)
    if name == "BatchSummary":
        # Lazy, as batch above.
        from pipeline.reports.summary import BatchSummary

        return BatchSummary
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
