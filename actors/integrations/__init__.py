"""The official SDKs (and the frameworks built on them) through the service actors.

`openai_client(ref)` / `anthropic_client(ref)` give an SDK client whose every request
goes through a service actor: its rate limits reserve from the request body and
reconcile from the answer's usage and rate-limit headers, its breaker and retries
judge the answer's status, its deadline and the caller's cancellation hold, and our
errors reach the SDK as the httpx2 exceptions it turns into its own. The service's
client is an `SDKClient` around one of our chat clients (it holds the provider's URL
and key). Needs the `http` extra, and `openai` or `anthropic` for the helpers.
"""

from actors._public import publish as _publish
from actors.integrations._client import VIRTUAL_ORIGIN, SDKClient
from actors.integrations._reply import ActorResponse
from actors.integrations._sdk import anthropic_client, http_client, openai_client
from actors.integrations._transport import ActorTransport, sdk_error

__all__ = [
    "VIRTUAL_ORIGIN",
    "ActorResponse",
    "ActorTransport",
    "SDKClient",
    "anthropic_client",
    "http_client",
    "openai_client",
    "sdk_error",
]

_publish(globals(), "actors.integrations")
