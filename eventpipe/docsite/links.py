"""The docs' link check, over the built site (and the README): no network.

Every ``href``/``src`` of every built HTML page is resolved: a relative link must name a file of
the site, and its ``#fragment`` an ``id`` (or ``<a name>``) of that page. External links
(``http(s)://``) cannot be fetched here, so they are listed, never requested. The README's
relative links must name files of the project, and a link into ``docs/`` with a fragment an
anchor of the built page.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

_SKIPPED_SCHEMES = ("mailto", "javascript", "data", "tel")


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        values = dict(attrs)
        if values.get("id"):
            self.ids.add(values["id"])
        if tag == "a" and values.get("name"):
            self.ids.add(values["name"])
        for attr in ("href", "src"):
            if values.get(attr) and not (tag == "link" and values.get("rel") in ("canonical", "alternate")):
                self.links.append(values[attr])


@dataclass
class LinkReport:
    broken: list[str] = field(default_factory=list)
    #: external URL -> the pages that link to it
    external: dict[str, set[str]] = field(default_factory=dict)
    pages: int = 0
    checked: int = 0


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8", errors="replace"))
    return page


def _target(site: Path, page_rel: str, url_path: str) -> str:
    """The site-relative file a relative URL of ``page_rel`` names (``dir/`` -> ``dir/index.html``)."""
    base = "" if url_path.startswith("/") else posixpath.dirname(page_rel)  # "/x": from the site's root (404.html)
    joined = posixpath.normpath(posixpath.join(base, unquote(url_path).lstrip("/")))
    if joined == ".":
        joined = ""
    if url_path.endswith("/") or url_path.endswith("/.") or not joined or (site / joined).is_dir():
        joined = posixpath.join(joined, "index.html")
    return joined


def check_site(site_dir: str | Path) -> LinkReport:
    """Check every link of every HTML page under ``site_dir``."""
    site = Path(site_dir)
    report = LinkReport()
    parsed = {p.relative_to(site).as_posix(): _parse(p) for p in sorted(site.rglob("*.html"))}
    report.pages = len(parsed)
    for page_rel, page in parsed.items():
        for link in page.links:
            parts = urlsplit(link)
            if parts.scheme in ("http", "https") or link.startswith("//"):
                report.external.setdefault(link, set()).add(page_rel)
                continue
            if parts.scheme in _SKIPPED_SCHEMES or parts.scheme:
                continue
            report.checked += 1
            target = page_rel if not parts.path else _target(site, page_rel, parts.path)
            if target.startswith("../") or not (site / target).is_file():
                report.broken.append(f"{page_rel}: {link} -> no such file ({target})")
                continue
            if parts.fragment and target.endswith(".html"):
                ids = parsed[target].ids if target in parsed else _parse(site / target).ids
                if unquote(parts.fragment) not in ids:
                    report.broken.append(f"{page_rel}: {link} -> no anchor #{parts.fragment} in {target}")
    return report


_MD_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_CODE = re.compile(r"```.*?```|`[^`\n]*`", re.S)


def markdown_links(text: str) -> list[str]:
    """The targets of the inline Markdown links and images of ``text`` (code spans and blocks left out)."""
    return _MD_LINK.findall(_CODE.sub("", text))


def check_readme(readme: str | Path, project_dir: str | Path, docs_dir: str, site_dir: str | Path,
                 report: LinkReport) -> None:
    """The README's links: files of the project; fragments of docs pages are anchors of the built page."""
    project, site = Path(project_dir), Path(site_dir)
    readme = Path(readme)
    for link in markdown_links(readme.read_text(encoding="utf-8")):
        parts = urlsplit(link)
        if parts.scheme in ("http", "https"):
            report.external.setdefault(link, set()).add(readme.name)
            continue
        if parts.scheme:
            continue
        report.checked += 1
        path = posixpath.normpath(unquote(parts.path)) if parts.path else readme.name
        if not (project / path).exists():
            report.broken.append(f"{readme.name}: {link} -> no such file")
            continue
        if parts.fragment:
            if not (path.startswith(docs_dir.rstrip("/") + "/") and path.endswith(".md")):
                report.broken.append(f"{readme.name}: {link} -> a fragment is checked only into {docs_dir}/*.md")
                continue
            page = path[len(docs_dir.rstrip("/")) + 1:-3]
            built = site / ("index.html" if page == "index" else f"{page}/index.html")
            if not built.is_file() or parts.fragment not in _parse(built).ids:
                report.broken.append(f"{readme.name}: {link} -> no anchor #{parts.fragment} in {built.name}")


def external_listing(report: LinkReport) -> str:
    lines = ["# External links of the docs (listed, not fetched: this build has no network)", ""]
    for url in sorted(report.external):
        lines.append(f"{url}\t{', '.join(sorted(report.external[url]))}")
    return "\n".join(lines) + "\n"
