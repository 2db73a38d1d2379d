"""A snapshot of a supervision tree, rendered as text or as a Mermaid diagram."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from supervisor._supervisor import Supervisor

__all__ = ["TreeNode", "render_mermaid", "render_text", "snapshot"]


@attrs.frozen
class TreeNode:
    """One node of `Supervisor.tree()`: a supervisor or a worker, with its children.

    Attributes:
        path: Ids from the root joined with '/'.
        kind: "supervisor" or "worker".
        state: The child state ("running", "restarting", ...); the root is "running".
        restarts: Times this child has been restarted by its supervisor.
        detail: The strategy (supervisors) or queued messages (workers).
        children: Nested nodes, in start order.
    """

    path: str
    kind: str
    state: str
    restarts: int
    detail: str
    children: tuple[TreeNode, ...] = ()

    @property
    def id(self) -> str:
        return self.path.rsplit("/", 1)[-1]


def snapshot(sup: Supervisor, *, state: str = "running", restarts: int = 0) -> TreeNode:
    """The tree under `sup` as it is now."""
    nodes = []
    for child in sup.which_children():
        path = f"{sup.path}/{child.id}"
        if child.kind == "supervisor":
            nodes.append(
                snapshot(sup.supervisor(child.id), state=child.state.value, restarts=child.restarts)
            )
        else:
            queued = child.ref.queued if child.ref is not None else 0
            nodes.append(
                TreeNode(path, "worker", child.state.value, child.restarts, f"queued={queued}")
            )
    return TreeNode(sup.path, "supervisor", state, restarts, sup.spec.strategy.value, tuple(nodes))


def _label(node: TreeNode) -> str:
    return f"{node.id} [{node.kind} {node.detail}] {node.state} restarts={node.restarts}"


def render_text(root: TreeNode) -> str:
    """An indented tree, one node per line."""
    lines = [_label(root)]

    def walk(node: TreeNode, prefix: str) -> None:
        for index, child in enumerate(node.children):
            last = index == len(node.children) - 1
            lines.append(f"{prefix}{'└── ' if last else '├── '}{_label(child)}")
            walk(child, prefix + ("    " if last else "│   "))

    walk(root, "")
    return "\n".join(lines)


def _node_id(path: str) -> str:
    return "n_" + re.sub(r"[^A-Za-z0-9_]", "_", path)


def render_mermaid(root: TreeNode) -> str:
    """A Mermaid `graph TD` of the tree; supervisors are rounded, workers are boxes."""
    nodes: list[str] = []
    edges: list[str] = []

    def walk(n: TreeNode) -> None:
        text = f"{n.id}<br/>{n.detail}<br/>{n.state}, restarts={n.restarts}"
        shape = f'("{text}")' if n.kind == "supervisor" else f'["{text}"]'
        nodes.append(f"    {_node_id(n.path)}{shape}")
        for child in n.children:
            edges.append(f"    {_node_id(n.path)} --> {_node_id(child.path)}")
            walk(child)

    walk(root)
    return "\n".join(["graph TD", *nodes, *edges])
