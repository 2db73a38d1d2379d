"""The dashboard's static page, script and stylesheet, shipped in the package.

The page loads only its own script and stylesheet (the Content-Security-Policy sent with
each asset forbids anything else, so nothing is ever fetched from the internet); the
script polls the JSON snapshot at `tree`, relative to the page, so the app can be
mounted under any prefix.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

__all__ = ["ASSETS", "CSP", "asset"]

ASSETS = {
    "/dashboard": ("dashboard.html", b"text/html; charset=utf-8"),
    "/dashboard.js": ("dashboard.js", b"text/javascript; charset=utf-8"),
    "/dashboard.css": ("dashboard.css", b"text/css; charset=utf-8"),
}
"""Served path -> (file in `supervisor/health/static`, content type)."""

CSP = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    b"img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@cache
def asset(path: str) -> tuple[bytes, bytes]:
    """The body and content type served at `path` (one of `ASSETS`), read once."""
    name, content_type = ASSETS[path]
    body = resources.files("supervisor.health").joinpath("static", name).read_bytes()
    return body, content_type
