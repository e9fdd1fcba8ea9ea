"""Talking to Apiframe: the only code that speaks HTTP to the API and its CDN (client), reads
its open-ended answers (wire), retries transient failures (retry), receives its webhooks and
uploads reference images."""
