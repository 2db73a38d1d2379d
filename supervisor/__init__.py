"""supervisor: Erlang/OTP-style supervision trees for `actors`.

Declare a tree with `SupervisorSpec` and `ChildSpec`, run it with `start` (an async
context manager) or `start_tree` (inside your own task group), and reach children
through stable refs: `sup.ref("db")`, `sup.ref("backends/llm")`. A `ServiceGroup` is a
subtree of several deployments of one service behind one ref (docs/groups.md).
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
from supervisor.groups._config import (
    FailoverPolicy,
    GroupConfig,
    GroupSpec,
    HedgePolicy,
    Routing,
    StreamRecovery,
    load_groups_config,
    load_groups_toml,
)
from supervisor.groups._group import (
    GroupStats,
    GroupUnavailable,
    MemberInfo,
    ServiceGroup,
)
from supervisor.groups._idempotent import is_idempotent
from supervisor.groups._member import GroupMember, MemberState, member
from supervisor.groups._strategies import (
    ConsistentHash,
    LeastInFlight,
    PowerOfTwoChoices,
    QuotaHeadroom,
    RoundRobin,
    RoutingStrategy,
    WeightedRoundRobin,
)
from supervisor.groups._stream import RecoveredResponse, StreamBreak

__all__ = [
    "AutoShutdown",
    "Backoff",
    "ChildCounts",
    "ChildInfo",
    "ChildSpec",
    "ChildState",
    "ConsistentHash",
    "FailoverPolicy",
    "GroupConfig",
    "GroupMember",
    "GroupSpec",
    "GroupStats",
    "GroupUnavailable",
    "HedgePolicy",
    "IntensityExceeded",
    "LeastInFlight",
    "MemberInfo",
    "MemberState",
    "OnCrash",
    "PowerOfTwoChoices",
    "QuotaHeadroom",
    "RecoveredResponse",
    "RestartType",
    "RoundRobin",
    "Routing",
    "RoutingStrategy",
    "ServiceGroup",
    "ServiceInstance",
    "ServiceRegistry",
    "Strategy",
    "StreamBreak",
    "StreamRecovery",
    "Supervisor",
    "SupervisorSpec",
    "TreeNode",
    "UnknownChild",
    "UnknownService",
    "Version",
    "VersionSpec",
    "WeightedRoundRobin",
    "WhileRestarting",
    "is_idempotent",
    "load_groups_config",
    "load_groups_toml",
    "member",
    "spec_from_dict",
    "spec_from_toml",
    "start",
    "start_tree",
]

_publish(globals(), "supervisor")
