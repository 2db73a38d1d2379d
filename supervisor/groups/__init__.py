"""Service groups: one ref over many deployments of a service (see docs/groups.md).

The public names are exported from `supervisor`; the code lives in this package's
private modules: configuration (`_config`), members (`_member`), routing strategies
(`_strategies`), failover (`_failover`), idempotency (`_idempotent`), stream recovery
(`_stream`) and the group itself (`_group`).
"""
