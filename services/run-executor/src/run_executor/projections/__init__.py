"""Read models built from this service's event store."""

from .runs import RunsProjection

__all__ = ["RunsProjection"]
