"""Redaction: the one place that scrubs secrets from text we keep or show.

Provider text (an error's message, code, type and param, any header we keep) may echo
what we sent, including the API key. Everything such text goes through `redact`
before it is stored on an exception, put in an event or kept on a response:

- each known secret, exactly and case-insensitively, and any run of 8 or more of its
  characters (a truncated echo such as ``"sk-test-0123..."`` or a key's tail);
- the generic shapes of credentials, known or not: ``Bearer <token>``, ``sk-...``
  keys, ``api_key=`` / ``api-key:`` / ``token=`` / ``password=`` / ``secret=`` values
  (also quoted, as in JSON), and URL query strings.

`one_line` is what an error message should be: the first line, redacted, then cut to a
length (redacting first, so a cut never exposes the part of a secret it kept).

`scrubbing_http_logs` covers the one place provider text reaches logs without us: the
HTTP stack (httpcore2, httpx2) logs raw response headers and URLs at DEBUG/INFO. While
a client holds it, a filter on those loggers redacts each record's message. It changes
no level, handler or format (the library never configures logging); it only rewrites
what those two libraries would otherwise print of a secret.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Final, Protocol

__all__ = [
    "CREDENTIAL_HEADERS",
    "REDACTED",
    "Redactor",
    "one_line",
    "redact",
    "redact_headers",
    "scrubbing_http_logs",
]

REDACTED: Final = "<redacted>"
CREDENTIAL_HEADERS: Final = frozenset(
    {"authorization", "proxy-authorization", "x-api-key", "api-key", "cookie", "set-cookie"}
)
"""Headers that carry credentials: never kept, never accepted as plain config."""

# A secret shorter than this is matched only as a whole (shorter runs would hide
# ordinary words); longer ones also by any run of this many of their characters.
_RUN: Final = 8
_SHORTEST: Final = 4

_PATTERNS: Final = (
    # Authorization values: "Bearer abc", "Basic abc".
    re.compile(r"(?i)\b(bearer|basic)(\s+)[^\s,;'\"]+"),
    # key=value and "key": "value" forms (the name is kept, the value goes).
    re.compile(
        r"(?i)(\b(?:x-)?(?:api[_-]?key|access[_-]?token|refresh[_-]?token|auth[_-]?token|token"
        r"|password|passwd|pwd|secret|client[_-]?secret|authorization)\b[\"']?\s*[=:]\s*)"
        r"([\"']?)(?!<redacted>|(?:bearer|basic)\s)[^\s&,;'\"]+"
    ),
    # Provider key shapes: sk-..., sk-ant-..., sk-proj-...
    re.compile(r"(?i)\b(sk)(-)[A-Za-z0-9_\-]{4,}"),
)
_URL_QUERY: Final = re.compile(r"(?i)(\bhttps?://[^\s?#'\"]+)\?[^\s#'\"]*")


class _Revealable(Protocol):
    def reveal(self) -> str: ...


def _values(secrets: Iterable[str | _Revealable | None]) -> tuple[str, ...]:
    values: list[str] = []
    for secret in secrets:
        value = secret if isinstance(secret, str) or secret is None else secret.reveal()
        if value and len(value) >= _SHORTEST:
            values.append(value)
    return tuple(values)


class Redactor:
    """Redacts a fixed set of known secrets plus the generic credential shapes.

    Built once per client (the secrets are read once into one case-insensitive
    pattern of their 8-character runs); calling it is cheap for text that holds no
    secret. Never shows the secrets in its repr.
    """

    __slots__ = ("_count", "_pattern", "_shortest")

    def __init__(self, secrets: Iterable[str | _Revealable | None] = ()) -> None:
        values = _values(secrets)
        pieces: set[str] = set()
        for value in values:
            if len(value) < _RUN:
                pieces.add(value)  # short: matched whole only
            else:
                pieces.update(value[i : i + _RUN] for i in range(len(value) - _RUN + 1))
        self._count = len(values)
        self._shortest = min((len(p) for p in pieces), default=0)
        # A lookahead finds every (overlapping) start of a run; longest pieces first.
        alternatives = "|".join(re.escape(p) for p in sorted(pieces, key=len, reverse=True))
        self._pattern = re.compile(f"(?=({alternatives}))", re.IGNORECASE) if pieces else None

    def __call__(self, text: str) -> str:
        """Returns `text` with every known secret and credential shape replaced."""
        if self._pattern is not None and len(text) >= self._shortest:
            text = self._known(text, self._pattern)
        return _generic(text)

    @staticmethod
    def _known(text: str, pattern: re.Pattern[str]) -> str:
        spans: list[tuple[int, int]] = []
        for match in pattern.finditer(text):
            start, end = match.start(), match.start() + len(match.group(1))
            if spans and start <= spans[-1][1]:
                spans[-1] = (spans[-1][0], max(end, spans[-1][1]))
            else:
                spans.append((start, end))
        if not spans:
            return text
        out: list[str] = []
        position = 0
        for start, end in spans:
            out += [text[position:start], REDACTED]
            position = end
        out.append(text[position:])
        return "".join(out)

    def __repr__(self) -> str:
        return f"<Redactor of {self._count} secret(s)>"


# Every generic pattern needs one of these: text without any is left as is, at once.
_HINT: Final = re.compile(r"bearer|basic|sk-|key|token|pass|pwd|secret|auth|\?", re.IGNORECASE)


def _generic(text: str) -> str:
    if _HINT.search(text) is None:
        return text
    text = _URL_QUERY.sub(rf"\1?{REDACTED}", text)
    for pattern in _PATTERNS:
        text = pattern.sub(rf"\1\2{REDACTED}", text)
    return text


_NO_SECRETS: Final = Redactor()


def redact(text: str, secrets: Iterable[str | _Revealable | None] = ()) -> str:
    """Returns `text` with `secrets` and every credential shape replaced by ``<redacted>``.

    Args:
        text: Any text (non-strings are converted with `str`).
        secrets: Known secret values (strings or `Secret`s) to hide, with their
            case-insensitive and truncated (8+ characters) echoes.
    """
    redactor = Redactor(secrets) if secrets else _NO_SECRETS
    return redactor(text if isinstance(text, str) else str(text))


def one_line(text: object, *, redactor: Redactor | None = None, limit: int = 200) -> str:
    """The first line of `text`, redacted, then cut to `limit` characters (with "...").

    What `short_message` and the service clients keep from provider or exception text.
    A broken `__str__` gives ``"<unprintable>"``.
    """
    try:
        string = text if isinstance(text, str) else str(text)
    except Exception:  # a hostile __str__ must not break error reporting
        return "<unprintable>"
    first = string.splitlines()[0] if string else ""
    first = (redactor or _NO_SECRETS)(first)
    if len(first) > limit:
        first = first[: max(0, limit - 3)] + "..."
    return first


def redact_headers(headers: Mapping[str, str], redactor: Redactor | None = None) -> dict[str, str]:
    """Header values redacted (names lower-cased); credential headers are dropped."""
    scrub = redactor or _NO_SECRETS
    return {
        name.lower(): scrub(value)
        for name, value in headers.items()
        if name.lower() not in CREDENTIAL_HEADERS
    }


# --------------------------------------------------------------------------- HTTP logs

_HTTP_LOGGERS: Final = (
    "httpx2",
    "httpcore2.connection",
    "httpcore2.connection_pool",
    "httpcore2.http11",
    "httpcore2.http2",
    "httpcore2.proxy",
    "httpcore2.socks",
)


class _HTTPLogScrubber(logging.Filter):
    """Redacts the secrets of every open client from the HTTP stack's log records."""

    def __init__(self) -> None:
        super().__init__()
        self.redactors: list[Redactor] = []

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is the logging system's to report
            return True
        for redactor in self.redactors:
            message = redactor(message)
        record.msg = message if self.redactors else _generic(message)
        record.args = None
        return True


_SCRUBBER: Final = _HTTPLogScrubber()


@contextlib.contextmanager
def scrubbing_http_logs(redactor: Redactor) -> Iterator[None]:
    """Redacts `redactor`'s secrets (and credential shapes) from httpcore2's and httpx2's
    log records while the block runs (the filter stays installed, idle, afterwards)."""
    if not _SCRUBBER.redactors:
        for name in _HTTP_LOGGERS:
            logger = logging.getLogger(name)
            if _SCRUBBER not in logger.filters:
                logger.addFilter(_SCRUBBER)
    _SCRUBBER.redactors.append(redactor)
    try:
        yield
    finally:
        _SCRUBBER.redactors.remove(redactor)
