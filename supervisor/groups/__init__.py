"""supervisor.groups: one ref over many deployments of a service (see docs/groups.md).

A `ServiceGroup` is a subtree of `member`s (each a service actor for one deployment)
behind one ref: a routing strategy picks a member per request, a failed request fails
over to another member within its deadline, a slow one is hedged, a broken stream is
continued on another member, and an adaptive concurrency limit follows each member's
capacity.
"""

from actors.lowlevel import publish as _publish
from supervisor._errors import GroupUnavailable
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
from supervisor.groups._group import GroupStats, MemberInfo, ServiceGroup
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
    "ConsistentHash",
    "FailoverPolicy",
    "GroupConfig",
    "GroupMember",
    "GroupSpec",
    "GroupStats",
    "GroupUnavailable",
    "HedgePolicy",
    "LeastInFlight",
    "MemberInfo",
    "MemberState",
    "PowerOfTwoChoices",
    "QuotaHeadroom",
    "RecoveredResponse",
    "RoundRobin",
    "Routing",
    "RoutingStrategy",
    "ServiceGroup",
    "StreamBreak",
    "StreamRecovery",
    "WeightedRoundRobin",
    "is_idempotent",
    "load_groups_config",
    "load_groups_toml",
    "member",
]

_publish(globals(), "supervisor.groups")
