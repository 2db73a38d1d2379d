"""Testing kit: virtual time, event capture, chaos injection, load generation, and the
mock services (the OpenAI-compatible and Anthropic server, databases, the MCP server script).

The mock services import their extras (hypercorn for `serve_mock_llm`) only when
started; the MCP test server runs as `python -m actors.testing.mcp_server`.
"""

from actors._public import publish as _publish
from actors.resilience._retry import retry_testing_mode
from actors.testing._capture import capture_events
from actors.testing._chaos import ChaosActor, ChaosClient, ChaosConfig, ChaosCrash, ChaosStats
from actors.testing._clock import VirtualClockEventLoop, virtual_time_backend
from actors.testing._databases import (
    PostgresServer,
    PostgresUnavailable,
    create_sqlite_db,
    find_postgres_bin,
    local_postgres,
    open_local_postgres,
    temporary_sqlite_db,
)
from actors.testing._load import LatencyHistogram, LoadConfig, LoadReport, run_load
from actors.testing._mock_llm import (
    Behaviour,
    MockLLM,
    MockLLMServer,
    Quota,
    ToolRule,
    serve_mock_llm,
)
from actors.testing._redis import (
    RedisCluster,
    RedisServer,
    TLSFiles,
    make_tls_files,
    redis_cluster,
    redis_server,
    redis_server_path,
)
from actors.testing._tasks import count_tasks

__all__ = [
    "Behaviour",
    "ChaosActor",
    "ChaosClient",
    "ChaosConfig",
    "ChaosCrash",
    "ChaosStats",
    "LatencyHistogram",
    "LoadConfig",
    "LoadReport",
    "MockLLM",
    "MockLLMServer",
    "PostgresServer",
    "PostgresUnavailable",
    "Quota",
    "RedisCluster",
    "RedisServer",
    "TLSFiles",
    "ToolRule",
    "VirtualClockEventLoop",
    "capture_events",
    "count_tasks",
    "create_sqlite_db",
    "find_postgres_bin",
    "local_postgres",
    "make_tls_files",
    "open_local_postgres",
    "redis_cluster",
    "redis_server",
    "redis_server_path",
    "retry_testing_mode",
    "run_load",
    "serve_mock_llm",
    "temporary_sqlite_db",
    "virtual_time_backend",
]

_publish(globals(), "actors.testing")
