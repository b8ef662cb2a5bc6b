from __future__ import annotations

from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase


@pytest.fixture
def db(mongo_db: AsyncDatabase[dict[str, Any]]) -> AsyncDatabase[dict[str, Any]]:
    return mongo_db
