"""Flow-graph rules: every problem is reported at once, each with a code and a location."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from agent_registry.domain.errors import InvalidFlowGraph
from agent_registry.domain.flow_graph import NODE_TYPES, flow_graph_problems, parse_flow_graph
from ailab_contracts.events.registry import FlowGraph

pytestmark = pytest.mark.unit


def graph(nodes: list[tuple[str, str]], edges: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    return {
        "nodes": [{"id": i, "type": t, "config": {}} for i, t in nodes],
        "edges": [{"source": s, "target": t, "condition": None} for s, t in edges],
    }


VALID = graph([("in", "input"), ("draft", "llm"), ("out", "output")], [("in", "draft"), ("draft", "out")])


def codes(problems: list[dict[str, Any]]) -> list[str]:
    return [p["code"] for p in problems]


def test_a_valid_graph_has_no_problems_and_parses_to_the_contract_model() -> None:
    assert flow_graph_problems(VALID) == []
    parsed = parse_flow_graph(VALID)
    assert isinstance(parsed, FlowGraph)
    assert [n.id for n in parsed.nodes] == ["in", "draft", "out"]


def test_every_node_type_of_the_contract_is_accepted() -> None:
    nodes = [("in", "input")] + [(f"n{i}", t) for i, t in enumerate(NODE_TYPES) if t != "input"]
    assert flow_graph_problems(graph(nodes)) == []


def test_a_graph_without_nodes_is_refused() -> None:
    problems = flow_graph_problems({"nodes": [], "edges": []})
    assert codes(problems) == ["no_nodes"]
    assert problems[0]["loc"] == ["flow_graph", "nodes"]


def test_unknown_node_type_names_the_node_and_the_allowed_types() -> None:
    (problem,) = flow_graph_problems(graph([("in", "input"), ("x", "teleport")]))
    assert problem["code"] == "unknown_node_type"
    assert problem["loc"] == ["flow_graph", "nodes", 1, "type"]
    assert problem["node_id"] == "x"
    assert "llm" in problem["allowed"]


def test_duplicate_node_ids_are_reported_at_each_repeat() -> None:
    problems = flow_graph_problems(graph([("a", "llm"), ("a", "tool"), ("a", "output")]))
    assert codes(problems) == ["duplicate_node_id", "duplicate_node_id"]
    assert [p["loc"][2] for p in problems] == [1, 2]


def test_edges_must_join_existing_nodes() -> None:
    problems = flow_graph_problems(graph([("a", "llm")], [("a", "ghost"), ("nowhere", "a")]))
    assert codes(problems) == ["dangling_edge", "dangling_edge"]
    assert problems[0]["loc"] == ["flow_graph", "edges", 0, "target"]
    assert problems[1]["loc"] == ["flow_graph", "edges", 1, "source"]


def test_at_most_one_input_node() -> None:
    problems = flow_graph_problems(graph([("i1", "input"), ("i2", "input"), ("o", "output")]))
    assert codes(problems) == ["multiple_input_nodes"]
    assert problems[0]["node_ids"] == ["i1", "i2"]


def test_a_graph_with_no_input_node_is_allowed() -> None:
    assert flow_graph_problems(graph([("only", "llm")])) == []


def test_node_configs_must_be_storable() -> None:
    g = graph([("a", "llm")])
    g["nodes"][0]["config"] = {"$where": 1}
    (problem,) = flow_graph_problems(g)
    assert problem["code"] == "invalid_key"
    assert problem["loc"] == ["flow_graph", "nodes", 0, "config", "$where"]


def test_all_problems_are_listed_together() -> None:
    g = graph(
        [("in", "input"), ("in", "input"), ("x", "bogus")],
        [("in", "missing"), ("x", "x")],
    )
    assert sorted(codes(flow_graph_problems(g))) == sorted(
        ["duplicate_node_id", "unknown_node_type", "multiple_input_nodes", "dangling_edge"]
    )
    with pytest.raises(InvalidFlowGraph) as err:
        parse_flow_graph(g)
    assert err.value.code == "invalid_flow_graph"
    assert len(err.value.problems) == 4
