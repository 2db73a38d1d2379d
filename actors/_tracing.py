"""Traces on the OpenTelemetry semantic conventions, through opentelemetry-api only.

The library never sets a provider: the application picks the SDK (or none) with
``opentelemetry.trace.set_tracer_provider``, or hands actorvisor its own with
`instrument`. Without opentelemetry-api, or without a provider, nothing is traced.

Spans::

    call {actor}            INTERNAL  each `ActorRef.call`, on the caller's side: mailbox
    │                                 wait, queueing, handling and the reply
    └─ {operation}          CLIENT    each attempt of a service's pipeline, named and
                                      described by its client (`Operation`): GenAI
                                      ``chat {model}``, database ``SELECT`` or
                                      ``sqlite``, MCP ``tools/call {tool}``

A pipeline called with no span current (a `@resilient` function from untraced code)
opens ``{name}`` (INTERNAL) around its attempts, so that they share one trace. Every
attempt span carries ``actorvisor.service`` and ``actorvisor.attempt`` beside the
client's attributes; it ends with the response's attributes (model, token usage,
finish reasons) or the failure's (``error.type``, status ERROR). A caller's
cancellation ends a span without an error.

The trace context travels in the envelope, like the deadline and the correlation id:
captured by `call` and `cast`, attached while the handler runs, detached after it. So a
span made in a handler (an attempt, a nested call to another actor) is a child of the
caller's span. Outgoing requests carry it: W3C ``traceparent`` on the LLM clients'
HTTP requests (`inject`, through the application's propagator), and the MCP request's
``_meta``.

Retries, give-ups, breaker rejections and transitions, limiter waits and refusals and
fallbacks are *events* on the span current where they happen (`add_event`): in a service
actor, the caller's ``call`` span. The prompt, the completion, query text and tool
arguments never reach a span unless the service opts in (`ServiceConfig.capture_content`);
secrets never do, and failures are recorded by type (no exception message or
traceback, which may quote either).

Cost: whether a provider is set is one read of a module global per call (the API's
own, read without calling into the API), so with tracing off a call makes no span
object at all. Under a parent span that is not sampled, no span is made either: its
decision stands (what the SDK's default parent-based sampler would decide), while its
context still travels and is injected, so downstream services see it. So the sampler is
asked once per new trace: a span the library starts unsampled travels in a context of
its own type (`_Unsampled`), which the handler's pipeline reads as the decision.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, TypeAlias, TypeVar

import attrs

from actors import _otel_metrics
from actors._clock import now as _now
from actors._events import emit

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import Span, Tracer, TracerProvider

try:
    from opentelemetry import context as _context
    from opentelemetry import trace as _trace
except ImportError:  # pragma: no cover - depends on the optional dependency
    _context = None  # type: ignore[assignment]
    _trace = None  # type: ignore[assignment]

__all__ = [
    "AttributeValue",
    "Describer",
    "Operation",
    "add_event",
    "attach",
    "capture",
    "detach",
    "end_span",
    "error_type",
    "inject",
    "instrument",
    "observe",
    "observing",
    "start_call",
    "tracer",
]

_T = TypeVar("_T")

AttributeValue: TypeAlias = str | bool | int | float | Sequence[str] | Sequence[int]
"""A span or metric attribute value (OpenTelemetry's primitive types)."""

_NAME: Final = "actorvisor"
_CLIENT: Final = None if _trace is None else _trace.SpanKind.CLIENT
_NonRecordingSpan: Final = None if _trace is None else _trace.NonRecordingSpan
_API_GLOBAL: Final = _trace is not None and hasattr(_trace, "_TRACER_PROVIDER")
"""Whether the API keeps its global provider where we read it: None until the
application sets one, read without calling into the API (this check runs on every call;
without it, every check asks the API)."""
_ENV_PROVIDER: Final = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ  # read once, like the API


@attrs.frozen(kw_only=True)
class Operation:
    """One request to a service as telemetry sees it, on the semantic conventions.

    Built by `ServiceClient.describe` for each attempt (only while tracing or metrics
    are on). Never put a secret in it, nor content (a prompt, query text, tool
    arguments) unless asked to capture it.

    Attributes:
        name: The span's name, low-cardinality (``chat gpt-4o``, ``SELECT``).
        attributes: Span attributes known before the request is sent.
        kind: "client" (a request to a remote service) or "internal".
        metric: The convention's duration histogram this attempt is recorded in
            (``gen_ai.client.operation.duration``, ``db.client.operation.duration``,
            ``mcp.client.operation.duration``), or None.
    """

    name: str
    attributes: Mapping[str, AttributeValue] = attrs.field(factory=dict)
    kind: Literal["client", "internal"] = "client"
    metric: str | None = None


class Describer(Protocol):
    """What a pipeline asks about its attempts (a `Service` forwards to its client)."""

    def operation(self, *args: Any, **kwargs: Any) -> Operation:
        """The attempt about to be made with these arguments."""
        ...

    def outcome(self, result: Any) -> Mapping[str, AttributeValue]:
        """Attributes of a returned value."""
        ...

    def failure(self, exc: Exception) -> Mapping[str, AttributeValue]:
        """Attributes of a failure (``error.type`` at least)."""
        ...


def error_type(exc: BaseException) -> str:
    """``error.type`` of a failure: the HTTP status of an error answer, else the
    exception's class name (low-cardinality, never its message)."""
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and not isinstance(status, bool):
        return str(status)
    return type(exc).__qualname__


class _Generic:
    """The describer of a pipeline nobody describes (`@resilient`): its name."""

    __slots__ = ("_operation",)

    def __init__(self, name: str) -> None:
        self._operation = Operation(name=name, kind="internal")

    def operation(self, *args: Any, **kwargs: Any) -> Operation:
        return self._operation

    def outcome(self, result: Any) -> Mapping[str, AttributeValue]:
        return {}

    def failure(self, exc: Exception) -> Mapping[str, AttributeValue]:
        return {"error.type": error_type(exc)}


# --------------------------------------------------------------------------- providers


class _Providers:
    """The tracer in use (None: off) and the providers `instrument` chose (None: global)."""

    __slots__ = ("quiet", "settled", "tracer", "tracer_provider")

    def __init__(self) -> None:
        self.tracer: Tracer | None = None
        self.tracer_provider: TracerProvider | None = None
        self.settled = _trace is None  # True: off for good (no API, or a no-op provider)
        self.quiet = _API_GLOBAL and not _ENV_PROVIDER  # off while the global one is unset


_state: Final = _Providers()


def tracer() -> Tracer | None:
    """The tracer spans are made with, or None while tracing is off. Cheap: call it on
    every call."""
    found = _state.tracer
    if found is not None:
        return found
    if _state.quiet and _trace._TRACER_PROVIDER is None:
        return None  # the application has set no provider (yet)
    if _state.settled:
        return None
    return _look_up()


def _look_up() -> Tracer | None:
    if _state.tracer_provider is None:
        provider = _trace.get_tracer_provider()
        if isinstance(provider, _trace.ProxyTracerProvider):
            return None
        if isinstance(provider, _trace.NoOpTracerProvider):
            _state.settled = True  # the global provider is set once: off for good
            return None
    else:
        provider = _state.tracer_provider
    _state.tracer = provider.get_tracer(_NAME, _version())
    return _state.tracer


def _version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(_NAME)
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return None


def observing() -> bool:
    """Whether a pipeline call here has something to record: spans (a tracer provider is
    set and no unsampled parent span is current) or metrics (a meter provider is set).

    One frame while both are off, and under an unsampled parent without metrics: it runs
    on every pipeline call.
    """
    if _state.tracer is not None:
        ctx = _current()
        if type(ctx) is not _Unsampled and _parent(ctx) != _UNSAMPLED:
            return True
        return _otel_metrics.meter() is not None
    if _state.quiet and _trace._TRACER_PROVIDER is None and _otel_metrics.unset():
        return False
    return tracer() is not None or _otel_metrics.meter() is not None


def instrument(
    *,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
) -> None:
    """Sends actorvisor's spans and metrics to these providers instead of the global ones.

    Without calling it, actorvisor uses OpenTelemetry's global providers, set by the
    application (``opentelemetry.trace.set_tracer_provider``, ...). Pass a provider to
    use one of its own (an application with several, or a test that must not touch the
    global state); call ``instrument()`` to return to the global ones. The lifecycle
    events counter (``actorvisor.events``) always uses the global meter provider.

    Args:
        tracer_provider: Where spans go (None: the global provider).
        meter_provider: Where metrics go (None: the global provider).
    """
    _state.tracer = None
    _state.tracer_provider = tracer_provider
    _state.settled = _trace is None
    _state.quiet = tracer_provider is None and _API_GLOBAL and not _ENV_PROVIDER
    _otel_metrics.use_meter_provider(meter_provider)


# --------------------------------------------------------------------------- spans


_ROOT: Final = 0  # no span in the context: a new trace
_UNSAMPLED: Final = 1  # a valid span, not sampled: its decision stands, no span under it
_SAMPLED: Final = 2
_MAX_DECIDED: Final = 256
_decided: dict[int, tuple[Any, int]] = {}

if _context is not None:

    class _Unsampled(_context.Context):
        """A context holding a span the library started that is not sampled: its type is
        the decision, read by the handler's pipeline (no span is made under it). A
        context derived from it (another span set in it) is a plain `Context` again."""

    (_SPAN_KEY,) = _trace.set_span_in_context(_trace.INVALID_SPAN, _context.Context())


def _parent(ctx: Any) -> int:
    """What `ctx` holds: no span, an unsampled one, or a sampled one.

    Decisions about the application's contexts without a sampled span are remembered by
    the context's identity (contexts are immutable; a caller's stays the same across its
    calls): the API's lookup costs about a tenth of a service call. Sampled ones are
    not, so no recording span is kept alive here.
    """
    if type(ctx) is _Unsampled:
        return _UNSAMPLED
    entry = _decided.get(id(ctx))
    if entry is not None and entry[0] is ctx:
        return entry[1]
    parent = _trace.get_current_span(ctx).get_span_context()
    if parent.is_valid and parent.trace_flags.sampled:
        return _SAMPLED
    kind = _UNSAMPLED if parent.is_valid else _ROOT
    if len(_decided) >= _MAX_DECIDED:
        _decided.clear()
    _decided[id(ctx)] = (ctx, kind)
    return kind


def start_call(found: Tracer, actor: str, msg: object, cid: object) -> tuple[Span | None, Any]:
    """Starts the caller's span of one `ActorRef.call` (`cid`: its correlation id).

    Returns:
        The span to end (None under an unsampled parent, or when it is the API's
        non-recording span, whose `end` does nothing) and the context the envelope
        carries (`_Unsampled` when the span is not sampled).
    """
    ctx = _current()
    if _parent(ctx) == _UNSAMPLED:
        return None, ctx
    span = found.start_span(
        f"call {actor}",
        ctx,
        _trace.SpanKind.INTERNAL,
        {
            "actorvisor.actor": actor,
            "actorvisor.message.type": type(msg).__name__,
            "actorvisor.correlation_id": str(cid),
        },
    )
    carried = _carry(span, ctx)
    return (None if type(span) is _NonRecordingSpan else span), carried


def _carry(span: Span, ctx: Any) -> Any:
    """The context holding `span` over `ctx`: an `_Unsampled` one unless it is sampled
    and records (the API's non-recording span, a sampler's drop or a no-op tracer's,
    has nothing recorded under it)."""
    if type(span) is _NonRecordingSpan or not span.get_span_context().trace_flags.sampled:
        return _Unsampled({**ctx, _SPAN_KEY: span})
    return _context.Context({**ctx, _SPAN_KEY: span})


def capture() -> Any:
    """The current context, for a cast's envelope (None while tracing is off)."""
    return None if tracer() is None else _current()


def end_span(span: Span, exc: BaseException | None = None) -> None:
    """Ends `span`; an `Exception` marks it failed with its ``error.type`` (a
    cancellation is no failure)."""
    if isinstance(exc, Exception) and span.is_recording():
        _failed(span, {"error.type": error_type(exc)})
    span.end()


def _failed(span: Span, attributes: Mapping[str, AttributeValue]) -> None:
    span.set_attributes(attributes)
    span.set_status(_trace.StatusCode.ERROR)


def _no_context(value: Any = None) -> Any:  # pragma: no cover - no context travels then
    raise RuntimeError("opentelemetry-api is not installed")


def _runtime_methods() -> tuple[Callable[[], Any], Callable[[Any], Any], Callable[[Any], None]]:
    """How the current context is read, attached and detached (they run on every traced
    message): the `ContextVar` of the API's own runtime context, whose methods are
    exactly its (no Python frame at all); another runtime's methods; the API's functions
    where it exposes no runtime."""
    runtime: Any = getattr(_context, "_RUNTIME_CONTEXT", None)
    if runtime is None:
        return _context.get_current, _context.attach, _context.detach
    from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext

    var = getattr(runtime, "_current_context", None)
    if type(runtime) is ContextVarsRuntimeContext and isinstance(var, ContextVar):
        return var.get, var.set, var.reset
    return runtime.get_current, runtime.attach, runtime.detach


_current, attach, detach = (
    (_no_context, _no_context, _no_context) if _context is None else _runtime_methods()
)
"""`attach` makes a context current (an envelope's, while its handler runs) and returns
the token; `detach` restores the context current before `attach` returned it (in the
same task, as the actor loop does)."""


def add_event(name: str, attributes: Mapping[str, AttributeValue]) -> None:
    """Adds an event to the current span, if tracing is on and it records."""
    if tracer() is None:
        return
    span = _trace.get_current_span()
    if span.is_recording():
        span.add_event(name, attributes)


def inject(carrier: dict[str, Any]) -> None:
    """Writes the current trace context into `carrier` (HTTP headers, an MCP request's
    ``_meta``) through the application's propagator, W3C ``traceparent`` by default."""
    if tracer() is None:
        return
    from opentelemetry import propagate

    propagate.inject(carrier)


# --------------------------------------------------------------------------- pipeline


class Attempts:
    """One pipeline call's attempts as the pipeline awaits them: each one a span (unless
    under an unsampled parent) and a duration in the client's histogram."""

    __slots__ = ("_describer", "_fn", "_measured", "_number", "_service", "_tracer")

    def __init__(
        self,
        service: str,
        fn: Callable[..., Awaitable[Any]],
        describer: Describer,
        found: Tracer | None,
    ) -> None:
        self._service = service
        self._fn = fn
        self._describer = describer
        self._tracer = found
        self._measured = _otel_metrics.meter() is not None
        self._number = 0

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self._number += 1
        found = self._tracer
        operation = None
        if found is not None or self._measured:
            operation = self._safely("describe", self._describer.operation, *args, **kwargs)
        if operation is None:  # nothing to record: under an unsampled parent, no metrics
            return await self._fn(*args, **kwargs)
        measured = self._measured and operation.metric is not None
        span: Span | None = None
        token: Any = None
        if found is not None:
            attributes = {
                **operation.attributes,
                "actorvisor.service": self._service,
                "actorvisor.attempt": self._number,
            }
            kind = _CLIENT if operation.kind == "client" else _trace.SpanKind.INTERNAL
            span = found.start_span(operation.name, kind=kind, attributes=attributes)
            token = attach(_carry(span, _current()))
        start = _now() if measured else 0.0
        try:
            result = await self._fn(*args, **kwargs)
        except Exception as exc:
            failure = self._safely("describe_error", self._describer.failure, exc)
            if failure is None:
                failure = {"error.type": error_type(exc)}
            if span is not None:
                detach(token)
                if span.is_recording():
                    _failed(span, failure)
                span.end()
            if measured:
                _otel_metrics.record(operation, _now() - start, failure)
            raise
        except BaseException:  # cancelled: no outcome, no failure
            if span is not None:
                detach(token)
                span.end()
            raise
        recording = span is not None and span.is_recording()
        outcome = None
        if recording or measured:
            outcome = self._safely("describe_result", self._describer.outcome, result)
        if span is not None:
            detach(token)
            if recording and outcome:
                span.set_attributes(outcome)
            span.end()
        if measured:
            _otel_metrics.record(operation, _now() - start, outcome or {})
        return result

    def _safely(
        self, method: str, describe: Callable[..., _T], *args: Any, **kwargs: Any
    ) -> _T | None:
        """`describe(...)`, or None if it raised: telemetry never fails a call (the
        client's bug is reported as a ``telemetry.describe_failed`` event)."""
        try:
            return describe(*args, **kwargs)
        except Exception as exc:
            emit(
                "telemetry.describe_failed",
                level="error",
                service=self._service,
                method=method,
                error_type=type(exc).__name__,
            )
            return None

    def __repr__(self) -> str:
        return f"<Attempts {self._service!r}>"


def describer_of(pipeline: Any) -> Describer:
    """The pipeline's describer (the generic one when it has none)."""
    found: Describer | None = pipeline.describer
    if found is None:
        found = pipeline.describer = _Generic(pipeline.name)
    return found


def observe(
    pipeline: Any,
    fn: Callable[..., Awaitable[Any]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    deadline: float | None,
) -> Awaitable[Any] | None:
    """`Pipeline.call` while observing: the same call with each attempt through
    `Attempts`, or None when there is nothing to record (under an unsampled parent,
    without metrics): then the pipeline runs as it would untraced.

    Opens the pipeline's own span first when no span is current, so that every attempt
    (and every retry event) of the call lands in one trace.
    """
    found = tracer()
    root = False
    if found is not None:
        parent = _parent(_current())
        if parent == _ROOT:
            root = True
        elif parent == _UNSAMPLED:
            found = None
    if found is None and _otel_metrics.meter() is None:
        return None
    _otel_metrics.watch(pipeline)
    attempts = Attempts(pipeline.name, fn, describer_of(pipeline), found)
    if not root:
        return pipeline.call(attempts, args, kwargs, deadline)  # type: ignore[no-any-return]
    assert found is not None
    return _rooted(found, pipeline, attempts, args=args, kwargs=kwargs, deadline=deadline)


async def _rooted(
    found: Tracer,
    pipeline: Any,
    attempts: Attempts,
    *,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    deadline: float | None,
) -> Any:
    ctx = _current()
    root = found.start_span(
        pipeline.name,
        ctx,
        _trace.SpanKind.INTERNAL,
        {"actorvisor.service": pipeline.name},
    )
    carried = _carry(root, ctx)
    if type(carried) is _Unsampled:
        attempts._tracer = None  # not sampled: no span under it
    token = attach(carried)
    try:
        result = await pipeline.call(attempts, args, kwargs, deadline)
    except BaseException as exc:
        detach(token)
        end_span(root, exc)
        raise
    detach(token)
    root.end()
    return result
