"""A provider that echoes the API key everywhere it can (message, code, type, param,
kept headers, in-stream error events; whole, upper-cased and truncated) never gets the
key into anything we keep or show: structlog's JSON, stdlib logging at DEBUG, reprs,
exceptions with their causes and tracebacks, the health app's /readyz and /metrics."""

from __future__ import annotations

import io
import logging
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import attrs
import httpx2
import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

import supervisor as sv
from actors import Secret, Service, ServiceConfig, open_actor
from actors._redact import Redactor, one_line, redact, redact_headers
from actors.resilience import RetryPolicy
from actors.services import ChatRequest
from actors.services.anthropic import AnthropicClient
from actors.services.llm import LLMClient
from actors.testing import Behaviour, MockLLMServer, serve_mock_llm
from supervisor.health import HealthConfig, health_app, open_health_monitor

pytestmark = pytest.mark.anyio

KEY = "sk-proj-Secret0123456789abcdefXYZ"
ECHOES = (KEY, KEY.upper(), KEY.lower(), KEY[:14], KEY[-10:])


def hostile(status: int, kind: str = "status") -> Behaviour:
    """An error that carries the key in every field and header a provider could use."""
    headers = {
        "retry-after": KEY,
        "x-request-id": KEY,
        "request-id": KEY.upper(),
        "x-ratelimit-limit-requests": KEY[:14],
        "anthropic-ratelimit-requests-remaining": KEY,
        "x-should-retry": KEY,
    }
    return Behaviour(
        kind=kind,
        status=status,
        message=f"Incorrect API key provided: {KEY}. Also {KEY.upper()}, {KEY[:14]}...",
        code=f"invalid_api_key:{KEY}",
        error_type=KEY.upper(),
        param=f"Bearer {KEY[:14]}",
        headers=headers,
    )


def leaked(text: str) -> list[str]:
    """The echoes of the key found in `text` (case-insensitively)."""
    lowered = text.lower()
    return [echo for echo in ECHOES if echo.lower() in lowered]


def exception_texts(exc: BaseException) -> list[str]:
    """str, repr and the formatted traceback of `exc` and every cause and context."""
    texts = ["".join(traceback.format_exception(exc))]
    seen: set[int] = set()
    current: BaseException | None = exc
    stack = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        texts += [str(current), repr(current), repr(vars(current))]
        stack += [e for e in (current.__cause__, current.__context__) if e is not None]
    return texts


@contextmanager
def captured_output() -> Iterator[io.StringIO]:
    """structlog rendered as JSON and the stdlib root logger at DEBUG, into one buffer."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.WriteLoggerFactory(file=buffer),
        cache_logger_on_first_use=False,
    )
    try:
        yield buffer
    finally:
        structlog.reset_defaults()
        root.removeHandler(handler)
        root.setLevel(level)


def llm_service(name: str, client: Any) -> Service[ChatRequest, Any]:
    retry = RetryPolicy.for_llm(
        attempts=2, backoff_initial=0.0, backoff_max=0.0, max_server_delay=1.0, budget_ratio=None
    )
    return Service(name, lambda: client, attrs.evolve(ServiceConfig.for_llm(), retry=retry))


def clients(server: MockLLMServer) -> list[Any]:
    return [
        LLMClient("gpt", server.base_url, model="m", api_key=Secret(KEY)),
        AnthropicClient("claude", server.base_url, model="m", api_key=Secret(KEY)),
    ]


async def test_a_provider_echoing_the_key_never_leaks_it() -> None:
    """Every failure and answer of a provider echoing the key leaves no trace of it."""
    texts: list[str] = []
    failures = [
        hostile(401),
        hostile(429),
        hostile(400),
        hostile(529, kind="stream_error"),
        hostile(503),
    ]
    async with serve_mock_llm() as server:
        with captured_output() as output:
            for client in clients(server):
                svc = llm_service(client.name, client)
                async with open_actor(svc.actor()) as ref:
                    for failure in failures:
                        server.control.default = failure
                        try:
                            await ref.call(ChatRequest.user("x", stream=True), timeout=5)
                        except Exception as exc:
                            texts += exception_texts(exc)
                        else:
                            pytest.fail(f"{failure.status} did not fail")
                    # A successful answer whose kept headers echo the key.
                    server.control.default = Behaviour()
                    server.control.script(Behaviour.ok("fine", headers=hostile(200).headers))
                    reply = await ref.call(ChatRequest.user("x"))
                    texts += [repr(reply), repr(reply.headers), str(reply.raw)]
                    texts += [repr(svc), repr(client), repr(vars(client)), repr(ref)]
                    texts.append(repr(svc.stats))
                    # The probe (no /models: a 1-token chat) fails on the same provider;
                    # the health app reports it.
                    server.control.default = hostile(401)
                    server.control.models_endpoint = False
                    async with open_health_monitor() as monitor:
                        monitor.add(
                            client.name,
                            ref.probe,
                            HealthConfig(
                                interval=600, failures_to_degrade=1, failures_to_unhealthy=1
                            ),
                        )
                        await monitor.probe_now(client.name)
                        app = health_app(monitor)
                        transport = httpx2.ASGITransport(app=app)
                        async with httpx2.AsyncClient(
                            transport=transport, base_url="http://h"
                        ) as http:
                            metrics = await http.get("/metrics")
                            ready = await http.get("/readyz")
                    texts += [metrics.text, ready.text]
                    server.control.default = Behaviour()
                    server.control.models_endpoint = True
        texts.append(output.getvalue())
    assert metrics.status_code == 200
    assert ready.status_code == 503
    assert len(texts) > 40
    assert "invalid_api_key" in "".join(texts)  # the provider's code is kept, redacted
    found = {echo for text in texts for echo in leaked(text)}
    assert not found, [text for text in texts if leaked(text)][:3]


async def test_tree_dumps_and_the_dashboard_never_show_the_key() -> None:
    """After every hostile failure under a supervisor, the tree dumps (text, Mermaid,
    snapshot), /tree, /dashboard and /metrics hold no echo of the key."""
    texts: list[str] = []
    async with serve_mock_llm() as server:
        services = {client.name: llm_service(client.name, client) for client in clients(server)}
        spec = sv.SupervisorSpec(
            id="agent",
            children=[sv.ChildSpec(id=name, factory=svc.actor) for name, svc in services.items()],
        )
        with captured_output() as output:
            async with sv.start(spec) as sup, open_health_monitor() as monitor:
                for name in services:
                    for failure in (hostile(401), hostile(429), hostile(529, "stream_error")):
                        server.control.default = failure
                        with pytest.raises(Exception) as info:
                            await sup.ref(name).call(ChatRequest.user("x", stream=True), timeout=5)
                        texts += exception_texts(info.value)
                    monitor.add(
                        name,
                        sup.ref(name).probe,
                        HealthConfig(interval=600, failures_to_degrade=1, failures_to_unhealthy=1),
                    )
                    server.control.models_endpoint = False
                    await monitor.probe_now(name)
                texts += [sup.dump(), sup.mermaid(), repr(sup.tree()), repr(sup)]
                app = health_app(monitor, tree=sup, services=services)
                transport = httpx2.ASGITransport(app=app)
                async with httpx2.AsyncClient(transport=transport, base_url="http://h") as http:
                    pages = [await http.get(path) for path in ("/tree", "/dashboard", "/metrics")]
                server.control.default = Behaviour()
        texts += [page.text for page in pages]
        texts.append(output.getvalue())
    assert [page.status_code for page in pages] == [200, 200, 200]
    assert pages[0].text.count('"failed":3') >= 2  # the dumps came after every failure
    found = {echo for text in texts for echo in leaked(text)}
    assert not found, [text for text in texts if leaked(text)][:3]


# --------------------------------------------------------------------------- the redactor


@pytest.mark.parametrize(
    "text",
    [
        f"key {KEY}",
        f"KEY {KEY.upper()}",
        f"truncated {KEY[:8]}...",
        f"tail ...{KEY[-8:]}",
        f"middle x{KEY[5:17]}x",
    ],
)
def test_known_secret_echoes_are_redacted(text: str) -> None:
    """The secret whole, in another case, or any 8 of its characters in a row goes."""
    assert not leaked(Redactor([Secret(KEY)])(text).replace("<redacted>", ""))
    assert "<redacted>" in Redactor([KEY])(text)


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("Authorization: Bearer abc.def-ghi", "Bearer <redacted>"),
        ("use sk-ant-api03-abcdef please", "sk-<redacted>"),
        ("api_key=hunter2&x=1", "api_key=<redacted>"),
        ('{"password": "hunter2"}', '"password": "<redacted>"'),
        ("token: t0k3n", "token: <redacted>"),
        ("GET https://h.example/v1?key=abc&sig=def done", "https://h.example/v1?<redacted> done"),
    ],
)
def test_credential_shapes_are_redacted_without_knowing_the_secret(text: str, kept: str) -> None:
    """Bearer tokens, sk- keys, key=value forms and URL queries go, secret or not."""
    assert kept in redact(text)
    assert "hunter2" not in redact(text)


def test_ordinary_text_is_left_alone() -> None:
    """Text without credentials is unchanged (max_tokens, quota codes, statuses)."""
    text = "HTTP 429 insufficient_quota: max_tokens: 5 exceeds the 4 tokens left"
    assert redact(text, [KEY]) == text


def test_one_line_redacts_before_cutting() -> None:
    """Cutting to the limit never keeps a piece of the secret that redaction missed."""
    text = "x" * 190 + KEY
    line = one_line(text, redactor=Redactor([KEY]), limit=200)
    assert len(line) <= 200
    assert not leaked(line)


def test_credential_headers_are_dropped_and_values_redacted() -> None:
    """redact_headers drops authorization/x-api-key and redacts every other value."""
    headers = {"Authorization": f"Bearer {KEY}", "x-api-key": KEY, "x-request-id": KEY}
    assert redact_headers(headers, Redactor([KEY])) == {"x-request-id": "<redacted>"}


_SECRET_CHARS = st.characters(whitelist_categories=("Lu", "Ll", "Nd"), max_codepoint=127)


@settings(max_examples=300, deadline=None)
@given(
    st.text(_SECRET_CHARS, min_size=12, max_size=40),
    st.text(max_size=30),
    st.text(max_size=30),
    st.data(),
)
def test_no_run_of_eight_secret_characters_survives(
    secret: str, before: str, after: str, data: st.DataObject
) -> None:
    """Whatever surrounds an echo (whole or a piece of 8+, any case), no 8 characters of
    the secret in a row are left."""
    start = data.draw(st.integers(0, len(secret) - 8))
    end = data.draw(st.integers(start + 8, len(secret)))
    piece = "".join(c.upper() if data.draw(st.booleans()) else c.lower() for c in secret[start:end])
    out = Redactor([secret])(before + piece + after).lower()
    lowered = secret.lower()
    assert not any(lowered[i : i + 8] in out for i in range(len(lowered) - 7))
