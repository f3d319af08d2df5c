"""GET /dashboard and its static files: the page the API serves itself.

The files live in ``chalicelib/dashboard/static/`` (the Lambda code zip takes
``chalicelib/**``); the front-end libraries in ``vendor/`` are built from npm by
``scripts/build-dashboard.sh``. Only the names listed here are served, so no
request can reach another file. Every file is text (HTML, JavaScript, CSS):
bodies are ``str``, which Chalice and API Gateway pass through unchanged even
with ``*/*`` binary media types (only ``isBase64Encoded`` bodies are decoded).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from chalice import Response

from chalicelib.http.errors import NotFound, ServiceUnavailable

STATIC_DIR = Path(__file__).resolve().parent.parent / "dashboard" / "static"

#: Served name -> (file under STATIC_DIR, Content-Type).
ASSETS: Mapping[str, tuple[str, str]] = MappingProxyType({
    "index.html": ("index.html", "text/html; charset=utf-8"),
    "app.js": ("app.js", "application/javascript; charset=utf-8"),
    "views.js": ("views.js", "application/javascript; charset=utf-8"),
    "regions.js": ("regions.js", "application/javascript; charset=utf-8"),
    "pipeline.js": ("pipeline.js", "application/javascript; charset=utf-8"),
    "insights.js": ("insights.js", "application/javascript; charset=utf-8"),
    "sessions.js": ("sessions.js", "application/javascript; charset=utf-8"),
    "app.css": ("app.css", "text/css; charset=utf-8"),
    "uplot.js": ("vendor/uplot.js", "application/javascript; charset=utf-8"),
    "uplot.css": ("vendor/uplot.css", "text/css; charset=utf-8"),
    "topojson.js": ("vendor/topojson.js", "application/javascript; charset=utf-8"),
    # Natural Earth 1:50m coastlines and borders (TopoJSON), fetched by regions.js when the Regions tab opens.
    "countries-50m.json": ("vendor/countries-50m.json", "application/json"),
})
#: Served files the page does not name in index.html: the scripts fetch them.
FETCHED = frozenset({"countries-50m.json"})

#: The page must never fetch from another host: the browser enforces it too.
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                           "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'")


@dataclass(frozen=True)
class Asset:
    """One static file as served.

    Attributes:
        body: the file's text.
        content_type: its ``Content-Type``.
    """

    body: str
    content_type: str


class DashboardAssets:
    """Reads the dashboard's files (once each per process).

    Args:
        static_dir: where the files are (tests give their own).
    """

    def __init__(self, static_dir: Path = STATIC_DIR) -> None:
        self._dir = static_dir
        self._cache: dict[str, Asset] = {}

    def asset(self, name: str) -> Asset:
        """The file served as ``name``.

        Raises:
            NotFound: the name is not one of ``ASSETS``.
            ServiceUnavailable: a listed file is missing (the front-end was not built).
        """
        if name not in ASSETS:
            raise NotFound(f"no dashboard file {name[:64]!r}")
        cached = self._cache.get(name)
        if cached is None:
            relative, content_type = ASSETS[name]
            try:
                body = (self._dir / relative).read_text(encoding="utf-8")
            except FileNotFoundError:
                raise ServiceUnavailable(f"dashboard file {relative} is missing: run scripts/build-dashboard.sh "
                                         "(make dashboard)") from None
            cached = self._cache[name] = Asset(body, content_type)
        return cached

    def response(self, name: str = "index.html") -> Response:
        """The HTTP response for one file (the page itself is never cached: it names the others)."""
        asset = self.asset(name)
        cache = "no-cache" if name == "index.html" else "max-age=300"
        return Response(body=asset.body, status_code=200,
                        headers={"Content-Type": asset.content_type, "Cache-Control": cache,
                                 "Content-Security-Policy": CONTENT_SECURITY_POLICY,
                                 "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"})
