"""Service actors: one actor per external service, owning its pool, breaker and limits.

The LLM (HTTP), SQL and MCP clients live in `actors.services.llm`, `.sql` and `.mcp`
and are imported only when used (their libraries are optional extras).
"""

from actors.services._actor import Service, ServiceActor, ServiceConfig, ServiceStats
from actors.services._base import Secret, ServiceClient

__all__ = ["Secret", "Service", "ServiceActor", "ServiceClient", "ServiceConfig", "ServiceStats"]

for _name in __all__:
    globals()[_name].__module__ = "actors.services"
del _name
