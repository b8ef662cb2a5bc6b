"""Rules of an agent's flow graph, checked on every publish; every problem is reported at once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, get_args

from ailab_contracts.events.registry import FlowGraph, NodeType

from .errors import InvalidFlowGraph
from .values import storage_problems

NODE_TYPES: tuple[str, ...] = get_args(NodeType)

Loc = list[str | int]


def _problem(code: str, message: str, loc: Loc, **extra: Any) -> dict[str, Any]:
    return {"code": code, "message": message, "loc": loc, **extra}


def flow_graph_problems(
    graph: Mapping[str, Any], loc: Sequence[str | int] = ("flow_graph",)
) -> list[dict[str, Any]]:
    """Every rule the graph breaks, in document order: empty graph, unknown node types, duplicate
    node ids, more than one `input` node, edges whose source or target is not a node, and node
    configs that cannot be stored."""
    base: Loc = list(loc)
    nodes: Sequence[Mapping[str, Any]] = graph.get("nodes") or []
    edges: Sequence[Mapping[str, Any]] = graph.get("edges") or []
    problems: list[dict[str, Any]] = []
    if not nodes:
        problems.append(_problem("no_nodes", "the flow graph has no nodes", [*base, "nodes"]))

    seen: set[str] = set()
    for i, node in enumerate(nodes):
        node_id, node_type = node.get("id"), node.get("type")
        if node_type not in NODE_TYPES:
            problems.append(
                _problem(
                    "unknown_node_type",
                    f"node {node_id!r} has unknown type {node_type!r}; "
                    f"expected one of {', '.join(NODE_TYPES)}",
                    [*base, "nodes", i, "type"],
                    node_id=node_id,
                    allowed=list(NODE_TYPES),
                )
            )
        if str(node_id) in seen:
            problems.append(
                _problem(
                    "duplicate_node_id",
                    f"node id {node_id!r} is used more than once",
                    [*base, "nodes", i, "id"],
                    node_id=node_id,
                )
            )
        seen.add(str(node_id))
        problems.extend(storage_problems(node.get("config") or {}, [*base, "nodes", i, "config"]))

    inputs = [str(n.get("id")) for n in nodes if n.get("type") == "input"]
    if len(inputs) > 1:
        problems.append(
            _problem(
                "multiple_input_nodes",
                f"a flow graph has at most one input node; found {len(inputs)}",
                [*base, "nodes"],
                node_ids=inputs,
            )
        )

    for i, edge in enumerate(edges):
        for end in ("source", "target"):
            if str(edge.get(end)) not in seen:
                problems.append(
                    _problem(
                        "dangling_edge",
                        f"edge {i} {end} {edge.get(end)!r} is not a node of the graph",
                        [*base, "edges", i, end],
                        node_id=edge.get(end),
                    )
                )
    return problems


def parse_flow_graph(graph: Mapping[str, Any]) -> FlowGraph:
    """The contract model of a valid graph, or InvalidFlowGraph listing every problem."""
    problems = flow_graph_problems(graph)
    if problems:
        raise InvalidFlowGraph(problems)
    return FlowGraph.model_validate(graph)
