"""The flow graph as the engine walks it: nodes by id, outgoing edges in document order, start nodes.

Walk rules:
- Execution starts at the `input` node; without one, at every node no edge enters (in document
  order); a graph where every node has an incoming edge starts at its first node.
- After a node runs, each outgoing edge's target is queued (document order); a `condition` node
  follows only the edges labelled with its result (`true` / `false`) and its unlabelled edges.
- A node runs each time an edge reaches it, so loops are possible; the step limit ends a loop
  without an exit (`step_limit_exceeded`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

NODE_TYPES = ("input", "llm", "tool", "condition", "transform", "output")


class FlowError(ValueError):
    """The graph cannot be executed."""

    code = "invalid_flow_graph"


@dataclass(frozen=True)
class Node:
    id: str
    type: str
    config: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    condition: str | None = None


@dataclass(frozen=True)
class FlowPlan:
    nodes: Mapping[str, Node]
    out_edges: Mapping[str, tuple[Edge, ...]]
    starts: tuple[str, ...]

    @classmethod
    def from_graph(cls, graph: Mapping[str, Any]) -> FlowPlan:
        raw_nodes = graph.get("nodes") if isinstance(graph, Mapping) else None
        if not isinstance(raw_nodes, list) or not raw_nodes:
            raise FlowError("the flow graph has no nodes")
        nodes: dict[str, Node] = {}
        for raw in raw_nodes:
            if not isinstance(raw, Mapping) or not isinstance(raw.get("id"), str):
                raise FlowError("every node needs an `id`")
            node_type = raw.get("type")
            if node_type not in NODE_TYPES:
                raise FlowError(f"node {raw['id']!r} has unknown type {node_type!r}")
            if raw["id"] in nodes:
                raise FlowError(f"node id {raw['id']!r} is used more than once")
            config = raw.get("config") or {}
            if not isinstance(config, Mapping):
                raise FlowError(f"node {raw['id']!r}: `config` must be an object")
            nodes[raw["id"]] = Node(raw["id"], str(node_type), config)
        out: dict[str, list[Edge]] = {n: [] for n in nodes}
        incoming: set[str] = set()
        for raw in graph.get("edges") or []:
            if not isinstance(raw, Mapping):
                raise FlowError("every edge is an object with `source` and `target`")
            source, target = raw.get("source"), raw.get("target")
            if source not in nodes or target not in nodes:
                raise FlowError(f"edge {source!r} -> {target!r} names a node the graph does not have")
            condition = raw.get("condition")
            out[str(source)].append(Edge(str(source), str(target), str(condition) if condition else None))
            incoming.add(str(target))
        inputs = [n.id for n in nodes.values() if n.type == "input"]
        if len(inputs) > 1:
            raise FlowError("a flow graph has at most one input node")
        if inputs:
            starts: tuple[str, ...] = (inputs[0],)
        else:
            roots = tuple(n for n in nodes if n not in incoming)
            starts = roots or (next(iter(nodes)),)
        return cls(nodes=nodes, out_edges={k: tuple(v) for k, v in out.items()}, starts=starts)

    def successors(self, node_id: str, branch: bool | None = None) -> list[str]:
        """Targets to run after `node_id`; `branch` is a condition node's result."""
        targets: list[str] = []
        for edge in self.out_edges.get(node_id, ()):
            label = (edge.condition or "").strip().lower()
            if branch is None or not label:
                targets.append(edge.target)
            elif label == ("true" if branch else "false"):
                targets.append(edge.target)
        return targets
