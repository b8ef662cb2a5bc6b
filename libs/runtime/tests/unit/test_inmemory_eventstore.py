import pytest

from ailab_runtime.eventstore import InMemoryEventStore
from ailab_runtime.testing.eventstore_contract import EventStoreContract

pytestmark = pytest.mark.unit


class TestInMemoryEventStore(EventStoreContract):
    @pytest.fixture
    def event_store(self) -> InMemoryEventStore:
        return InMemoryEventStore()
