"""The usage-meter's service objects, built once per process by bootstrap and kept in runtime.extras."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .adapters.kafka_usage import UsageConsumer
from .adapters.mongo_views import MongoUsageViews
from .application.bulk import UsagePublisher
from .application.ingest import UsageIngestor
from .application.jobs import DayCloser, QuotaEvaluator
from .domain.model import AcceptanceRules


@dataclass
class UsageMeterServices:
    rules: AcceptanceRules
    publisher: UsagePublisher
    publisher_errors: type[Exception] | tuple[type[Exception], ...]
    views: MongoUsageViews
    ingestor: UsageIngestor
    consumer: UsageConsumer
    quotas: QuotaEvaluator
    closer: DayCloser
    extra: dict[str, Any]
