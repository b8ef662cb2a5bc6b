"""Datasets: streamed JSONL/CSV upload and download, inferred schema, addressable examples.

Routes under `/v1/tenants/{tenant_id}/datasets` (api.py); events `registry.Dataset*` and
`usage.UsageRecorded` on the stream `dataset:{tenant}:{id}` (model.py); read models `datasets` and
`dataset_artifacts` (views.py); file bytes in GridFS `dataset_files` and rows in `dataset_examples`
(storage.py); the tenants' plans from `ailab.tenancy.events` (plans.py); a periodic sweep of
orphaned uploads (cleanup.py).
"""

from .api import TAG, router
from .wiring import FEATURE

__all__ = ["FEATURE", "TAG", "router"]
