"""supervisor: Erlang/OTP-style supervision trees for `actors`.

Declare a tree with `SupervisorSpec` and `ChildSpec`, run it with `start` (an async
context manager) or `start_tree` (inside your own task group), and reach children
through stable refs: `sup.ref("db")`, `sup.ref("backends/llm")`. Health monitoring,
fallback routing and service groups (several deployments of one service behind one ref)
are in `supervisor.health`, `supervisor.fallback` and `supervisor.groups`.
"""

from actors.lowlevel import publish as _publish
from supervisor._errors import IntensityExceeded, UnknownChild, UnknownService
from supervisor._load import spec_from_dict, spec_from_toml
from supervisor._registry import ServiceInstance, ServiceRegistry, Version, VersionSpec
from supervisor._run import start, start_tree
from supervisor._spec import (
    AutoShutdown,
    Backoff,
    ChildSpec,
    OnCrash,
    RestartType,
    Strategy,
    SupervisorSpec,
    WhileRestarting,
)
from supervisor._supervisor import ChildCounts, ChildInfo, ChildState, Supervisor
from supervisor._tree import TreeNode

__all__ = [
    "AutoShutdown",
    "Backoff",
    "ChildCounts",
    "ChildInfo",
    "ChildSpec",
    "ChildState",
    "IntensityExceeded",
    "OnCrash",
    "RestartType",
    "ServiceInstance",
    "ServiceRegistry",
    "Strategy",
    "Supervisor",
    "SupervisorSpec",
    "TreeNode",
    "UnknownChild",
    "UnknownService",
    "Version",
    "VersionSpec",
    "WhileRestarting",
    "spec_from_dict",
    "spec_from_toml",
    "start",
    "start_tree",
]

_publish(globals(), "supervisor")
