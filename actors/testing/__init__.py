"""Testing kit: virtual time, event capture, chaos injection, load generation, and the
mock services (the OpenAI-compatible server, databases, the MCP server script).

The mock services need their extras (`http`, `postgres`, `mcp`); import them from
`actors.testing.mock_llm`-style submodules only when used:
`actors.testing._mock_llm.serve_mock_llm`, `actors.testing._databases`,
`python -m actors.testing.mcp_server`.
"""

from actors.resilience._retry import retry_testing_mode
from actors.testing._capture import capture_events
from actors.testing._chaos import ChaosActor, ChaosClient, ChaosConfig, ChaosCrash, ChaosStats
from actors.testing._clock import VirtualClockEventLoop, virtual_time_backend
from actors.testing._load import LatencyHistogram, LoadConfig, LoadReport, run_load

__all__ = [
    "ChaosActor",
    "ChaosClient",
    "ChaosConfig",
    "ChaosCrash",
    "ChaosStats",
    "LatencyHistogram",
    "LoadConfig",
    "LoadReport",
    "VirtualClockEventLoop",
    "capture_events",
    "retry_testing_mode",
    "run_load",
    "virtual_time_backend",
]

for _name in __all__:
    _obj = globals()[_name]
    if "._" in getattr(_obj, "__module__", ""):
        _obj.__module__ = "actors.testing"
del _name, _obj
