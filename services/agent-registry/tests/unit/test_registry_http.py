"""HTTP details: If-Match parsing and the request schemas."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from agent_registry.entrypoints.http import parse_if_match
from agent_registry.entrypoints.schemas import AgentVersionCreate, AgentVersionUpdate, ProjectCreate
from ailab_runtime.preconditions import etag

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("header", "versions", "any_version"),
    [
        ('"3"', {3}, False),
        ('W/"3"', {3}, False),
        ('"1", "4"', {1, 4}, False),
        ("7", {7}, False),
        ("*", set(), True),
        ('"abc"', set(), False),
    ],
)
def test_if_match(header: str, versions: set[int], any_version: bool) -> None:
    pre = parse_if_match(header)
    assert pre is not None
    assert (set(pre.versions), pre.any_version) == (versions, any_version)


def test_absent_or_blank_if_match_means_no_precondition() -> None:
    assert parse_if_match(None) is None
    assert parse_if_match("  ") is None


def test_etag_round_trips() -> None:
    pre = parse_if_match(etag(12))
    assert pre is not None and pre.versions == {12}


def test_schemas_forbid_unknown_fields_and_immutable_flow_changes() -> None:
    with pytest.raises(ValidationError):
        ProjectCreate.model_validate({"name": "p", "owner": "x"})
    with pytest.raises(ValidationError, match="publish a new version"):
        AgentVersionUpdate.model_validate({"flow_graph": {"nodes": []}})
    assert ProjectCreate.model_validate({"name": "  p  "}).name == "p"


def test_unknown_node_types_reach_the_domain_rules() -> None:
    # the schema keeps `type` open so that the domain can list it with every other graph problem
    body = AgentVersionCreate.model_validate({"flow_graph": {"nodes": [{"id": "a", "type": "teleport"}]}})
    assert body.flow_graph.nodes[0].type == "teleport"
