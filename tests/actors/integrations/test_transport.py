"""`ActorTransport` and `SDKClient` at their boundaries: what the SDKs raise for our
errors, what never leaves for another host, answers the SDK cannot read, requests
the SDK sends that we cannot read, and replies nobody received (both backends)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import anyio
import httpx2
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors import (
    KINDS,
    ActorDown,
    BulkheadFull,
    CallTimeout,
    CircuitOpen,
    ConfigError,
    DeadlineExceeded,
    InvalidRequest,
    MailboxFull,
    MalformedResponse,
    PoolTimeout,
    RateLimited,
    Service,
    ServiceTimeout,
    ServiceUnavailable,
    open_actor,
)
from actors.integrations import (
    VIRTUAL_ORIGIN,
    ActorResponse,
    ActorTransport,
    SDKClient,
    anthropic_client,
    http_client,
    openai_client,
    sdk_error,
)
from actors.resilience import BreakerState
from actors.services.llm import LLMClient
from actors.testing import Behaviour, MockLLMServer, serve_mock_llm

from ..services.llm_strategies import json_values
from .surfaces import Surface, anthropic_user, openai_user, until, user

pytestmark = pytest.mark.anyio

OPENAI = Surface("openai", sdk=True)
ANTHROPIC = Surface("anthropic", sdk=True)


@pytest.fixture
async def server() -> AsyncIterator[MockLLMServer]:
    async with serve_mock_llm() as running:
        yield running


def causes(exc: BaseException) -> list[type[BaseException]]:
    chain = []
    while exc.__cause__ is not None:
        exc = exc.__cause__
        chain.append(type(exc))
    return chain


# -- our errors as the SDKs' ---------------------------------------------------------------

REQUEST = httpx2.Request("POST", f"{VIRTUAL_ORIGIN}/chat/completions")


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (CallTimeout("llm", 1.0), httpx2.ReadTimeout),
        (ServiceTimeout("llm", "slow"), httpx2.ReadTimeout),
        (DeadlineExceeded("llm", 1.0), httpx2.ReadTimeout),
        (RateLimited("llm", 2.0), httpx2.PoolTimeout),
        (MailboxFull("llm", 8), httpx2.PoolTimeout),
        (PoolTimeout("llm", 1.0), httpx2.PoolTimeout),
        (CircuitOpen("llm", 30.0), httpx2.ConnectError),
        (BulkheadFull("llm"), httpx2.ConnectError),
        (ActorDown("llm", None), httpx2.ConnectError),
        (ServiceUnavailable("llm", "refused"), httpx2.ConnectError),
        (MalformedResponse("llm", "not JSON"), httpx2.RemoteProtocolError),
        (InvalidRequest("llm", "url", "elsewhere"), httpx2.LocalProtocolError),
    ],
    ids=lambda value: type(value).__name__,
)
def test_each_of_our_errors_has_its_httpx2_counterpart(ours: Any, theirs: type) -> None:
    """Timeouts become httpx2 timeouts, refusals connect errors, unreadable answers
    protocol errors, each carrying the request and our message."""
    error = sdk_error(ours, REQUEST)
    assert type(error) is theirs
    assert error.request is REQUEST
    assert str(ours) in str(error)


def test_a_transport_failure_keeps_its_own_httpx2_type() -> None:
    """A ServiceUnavailable caused by an httpx2 read error is raised as a ReadError."""
    ours = ServiceUnavailable("llm", "reset")
    ours.__cause__ = httpx2.ReadError("reset")
    assert type(sdk_error(ours)) is httpx2.ReadError


async def test_a_call_past_its_deadline_is_the_sdks_timeout_error(
    server: MockLLMServer,
) -> None:
    """A hung provider past the call's deadline is the SDK's APITimeoutError, caused by
    httpx2's ReadTimeout, caused by our CallTimeout; the provider sees the client go,
    and the next request (one at a time: the cold start) is served at once."""
    server.control.script(Behaviour.hang())
    svc = OPENAI.service(server.base_url)
    async with open_actor(svc.actor()) as ref:
        # The transport's timeout bounds the call only; the SDK's own (per read, here
        # unset) would race it from inside the attempt, as a ServiceTimeout.
        sdk = openai.AsyncOpenAI(
            base_url=VIRTUAL_ORIGIN,
            api_key="x",
            http_client=http_client(ref, timeout=0.3),
            max_retries=0,
        )
        async with sdk:
            with pytest.raises(openai.APITimeoutError) as info:
                await sdk.chat.completions.create(model="m", messages=openai_user("hi"))
            assert causes(info.value)[:2] == [httpx2.ReadTimeout, CallTimeout]
            await until(lambda: server.control.hanging == 0)
            with anyio.fail_after(1):
                await sdk.chat.completions.create(model="m", messages=openai_user("next"))


async def test_an_open_breaker_is_the_sdks_connection_error(server: MockLLMServer) -> None:
    """A forced-open breaker reaches the anthropic SDK as APIConnectionError, from
    httpx2's ConnectError, from CircuitOpen, without a request."""
    svc = ANTHROPIC.service(server.base_url)
    assert svc.breaker is not None
    svc.breaker.force(BreakerState.FORCED_OPEN)
    async with open_actor(svc.actor()) as ref, anthropic_client(ref) as client:
        with pytest.raises(anthropic.APIConnectionError) as info:
            await client.messages.create(model="c", max_tokens=10, messages=anthropic_user("hi"))
    assert causes(info.value)[:2] == [httpx2.ConnectError, CircuitOpen]
    assert server.control.chat_requests == 0


async def test_a_quota_429_is_the_sdks_rate_limit_error_at_once(server: MockLLMServer) -> None:
    """insufficient_quota, read from the 429's body, is permanent: the SDK gets its
    RateLimitError from the only request made."""
    server.control.script(Behaviour.quota_exceeded(repeat=4))
    svc = OPENAI.service(server.base_url)
    async with open_actor(svc.actor()) as ref, openai_client(ref) as client:
        with pytest.raises(openai.RateLimitError) as info:
            await client.chat.completions.create(model="m", messages=openai_user("hi"))
    assert info.value.code == "insufficient_quota"
    assert server.control.chat_requests == 1
    assert svc.stats.verdicts == {"permanent": 1}


# -- bad answers, bad requests ---------------------------------------------------------------


@pytest.mark.parametrize("surface", [OPENAI, ANTHROPIC], ids=lambda s: s.wire)
async def test_a_malformed_answer_is_retried_then_a_clean_sdk_error(
    surface: Surface, server: MockLLMServer
) -> None:
    """A 200 whose body is not JSON is retried by the actor; when every attempt gets
    one, the SDK raises its APIConnectionError from RemoteProtocolError from
    MalformedResponse (never a JSON error from its parser)."""
    server.control.script(Behaviour.malformed(repeat=4))
    svc = surface.service(server.base_url)
    async with open_actor(svc.actor()) as ref, surface.asker(ref) as asker:
        with pytest.raises((openai.APIConnectionError, anthropic.APIConnectionError)) as info:
            await asker.ask("hi")
    assert causes(info.value)[:2] == [httpx2.RemoteProtocolError, MalformedResponse]
    assert server.control.chat_requests == 4


async def test_a_malformed_sdk_request_is_the_callers_mistake(server: MockLLMServer) -> None:
    """A request the provider refuses (openai: no messages; anthropic: max_tokens 0)
    reaches it once; its 400 is the SDK's BadRequestError, REJECTED: not retried, a
    breaker success."""
    gpt, claude = OPENAI.service(server.base_url), ANTHROPIC.service(server.base_url)
    async with open_actor(gpt.actor()) as gpt_ref, open_actor(claude.actor()) as claude_ref:
        async with openai_client(gpt_ref) as oai, anthropic_client(claude_ref) as ant:
            with pytest.raises(openai.BadRequestError):
                await oai.chat.completions.create(model="m", messages=[])
            with pytest.raises(anthropic.BadRequestError):
                await ant.messages.create(model="c", max_tokens=0, messages=anthropic_user("hi"))
    assert [s.status for s in server.control.served] == [400, 400]
    for svc in (gpt, claude):
        assert svc.stats.verdicts == {"rejected": 1}
        assert svc.breaker is not None
        assert svc.breaker.metrics().failures == 0


async def test_a_truncated_answer_is_retried(server: MockLLMServer) -> None:
    """A JSON answer cut in half is read in the attempt, so the actor retries it."""
    server.control.script(Behaviour.truncated())
    svc = ANTHROPIC.service(server.base_url)
    async with open_actor(svc.actor()) as ref, anthropic_client(ref) as client:
        message = await client.messages.create(
            model="c", max_tokens=10, messages=anthropic_user("hi")
        )
    block = message.content[0]
    assert isinstance(block, anthropic.types.TextBlock)
    assert block.text == "echo: hi"
    assert server.control.chat_requests == 2


async def test_a_request_for_another_host_never_leaves(server: MockLLMServer) -> None:
    """An SDK pointed elsewhere gets APIConnectionError from LocalProtocolError from
    InvalidRequest; nothing is sent, so the service's key goes nowhere."""
    svc = OPENAI.service(server.base_url)
    async with open_actor(svc.actor()) as ref:
        http = httpx2.AsyncClient(transport=ActorTransport(ref))
        client = openai.AsyncOpenAI(
            base_url="http://127.0.0.2:9/v1", api_key="x", http_client=http, max_retries=0
        )
        async with client:
            with pytest.raises(openai.APIConnectionError) as info:
                await client.chat.completions.create(model="m", messages=openai_user("hi"))
    assert causes(info.value)[:2] == [httpx2.LocalProtocolError, InvalidRequest]
    assert server.control.requests == 0


async def test_the_sdks_own_base_url_works_too(server: MockLLMServer) -> None:
    """An SDK given the service's real base URL and our transport is served the same."""
    svc = OPENAI.service(server.base_url)
    async with open_actor(svc.actor()) as ref:
        http = httpx2.AsyncClient(transport=ActorTransport(ref))
        client = openai.AsyncOpenAI(
            base_url=server.base_url, api_key="x", http_client=http, max_retries=0
        )
        async with client:
            models = await client.models.list()
            completion = await client.chat.completions.create(model="m", messages=openai_user("hi"))
    assert [model.id for model in models.data] == ["mock-gpt"]
    assert completion.choices[0].message.content == "echo: hi"
    assert svc.stats.requests == 2


@pytest.mark.parametrize(
    "options",
    [{"max_retries": 2}, {"base_url": "http://elsewhere/v1"}, {"http_client": object()}],
    ids=lambda options: next(iter(options)),
)
def test_the_helpers_refuse_settings_they_own(options: dict[str, Any]) -> None:
    """max_retries other than 0, a base URL or an HTTP client are ConfigErrors."""
    with pytest.raises(ConfigError) as info:
        openai_client(object_with_call(), **options)
    assert info.value.field == next(iter(options))


def object_with_call() -> Any:
    class Ref:
        async def call(self, msg: Any, /, *, timeout: float | None = None) -> Any:
            raise AssertionError("not called")

    return Ref()


# -- a reply its caller never received ---------------------------------------------------------


class _Body(httpx2.AsyncByteStream):
    closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b"data: {}\n\n"

    async def aclose(self) -> None:
        self.closed = True


async def test_a_reply_made_as_its_caller_gives_up_is_closed() -> None:
    """The reply a streamed answer made just before its caller was cancelled is closed
    by the transport: its provider response closes and what it holds settles."""
    from actors.integrations._client import REPLIES
    from actors.integrations._reply import relay
    from actors.services._wire import Wire

    body = _Body()
    settled: list[str] = []
    made = anyio.Event()

    class Ref:
        async def call(self, msg: httpx2.Request, /, *, timeout: float | None = None) -> Any:
            provider = httpx2.Response(200, stream=body)
            reply = relay(provider, None, Wire(service="llm"))
            await reply.settle_later(_record(settled))
            msg.extensions[REPLIES].append(reply)
            made.set()
            await anyio.sleep_forever()  # the reply, about to be delivered

    async with anyio.create_task_group() as tg:
        tg.start_soon(ActorTransport(Ref()).handle_async_request, REQUEST)
        await made.wait()
        tg.cancel_scope.cancel()
    assert body.closed
    assert settled == ["settled"]


def _record(settled: list[str]) -> Any:
    async def finish() -> None:
        settled.append("settled")

    return finish


# -- untrusted input: any request body, any streamed answer ------------------------------------

CHAT = SDKClient(LLMClient("llm", "http://127.0.0.1:9/v1", model="m"))
SSE_EVENTS = st.builds(
    lambda event, data: (
        (f"event: {event}\n" if event else "").encode()
        + b"data: "
        + json.dumps(data).encode()
        + b"\n\n"
    ),
    st.sampled_from(["", "message_start", "message_delta", "message_stop", "error"]),
    json_values
    | st.just("[DONE]")
    | st.just({"usage": {"prompt_tokens": 5, "completion_tokens": -1}}),
)


@settings(max_examples=300, deadline=None)
@given(
    body=st.binary(max_size=300) | json_values.map(lambda value: json.dumps(value).encode()),
    path=st.sampled_from(["chat/completions", "models", "embeddings", "x/../y", "?a=b"]),
)
def test_any_request_body_has_a_cost_or_a_documented_refusal(body: bytes, path: str) -> None:
    """Whatever an SDK sends, the client prices it (finite, >= 0) or refuses it with
    InvalidRequest; it never raises anything else."""
    request = httpx2.Request("POST", f"{VIRTUAL_ORIGIN}/{path}", content=body)
    try:
        CHAT.check_request(request)
    except InvalidRequest:
        return
    costs = CHAT.costs(request)
    assert costs["requests"] == 1.0
    assert all(0 <= value < float("inf") for value in costs.values())


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    chunks=st.lists(st.binary(max_size=200) | SSE_EVENTS, max_size=8),
    wire=st.sampled_from(["o", "a"]),
)
def test_any_streamed_body_is_relayed_untouched(
    backend: str, chunks: list[bytes], wire: str
) -> None:
    """Whatever bytes a provider streams reach the SDK unchanged, and the side reader
    learning the usage never raises; the reply always settles."""
    from actors.integrations._reply import relay
    from actors.services._wire import Wire
    from actors.services.anthropic import AnthropicClient

    chat = CHAT.chat if wire == "o" else AnthropicClient("llm", "http://127.0.0.1:9/v1", model="m")

    class Body(httpx2.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            for chunk in chunks:
                yield chunk

    async def main() -> None:
        reply = relay(httpx2.Response(200, stream=Body()), chat, Wire(service="llm"))
        relayed = [chunk async for chunk in reply.aiter_raw()]
        assert b"".join(relayed) == b"".join(chunks)
        assert reply.settled
        assert all(value >= 0 for value in reply.used.values())

    anyio.run(main, backend=backend)


def test_a_reply_with_a_body_read_in_the_attempt_is_settled() -> None:
    """A reply made from a body read in the attempt holds nothing: it is settled."""
    reply = ActorResponse(200, headers=httpx2.Headers(), content=b"{}")
    assert reply.settled
    assert reply.finished


def test_the_service_client_is_priced_from_the_body() -> None:
    """A chat body's estimate counts its text and completion budget (and a bigger
    max_tokens costs more)."""
    small = httpx2.Request(
        "POST",
        f"{VIRTUAL_ORIGIN}/chat/completions",
        json={"messages": user("hi"), "max_tokens": 10},
    )
    big = httpx2.Request(
        "POST",
        f"{VIRTUAL_ORIGIN}/chat/completions",
        json={"messages": user("hi"), "max_tokens": 900},
    )
    assert CHAT.costs(big)["tokens"] - CHAT.costs(small)["tokens"] == 890
    assert CHAT.costs(small)["output_tokens"] == 10


def test_only_sdk_clients_wrap_chat_clients() -> None:
    """SDKClient needs one of our chat clients; a Service built on it has the LLM kind."""
    with pytest.raises(ConfigError):
        SDKClient(object())  # type: ignore[arg-type]
    svc = Service("llm", lambda: SDKClient(LLMClient("llm", "http://h/v1", model="m")))
    assert svc.kind is KINDS["llm"]
    assert svc.config.retry == KINDS["llm"].retry
