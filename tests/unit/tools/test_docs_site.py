"""The docs site: it builds with --strict, no internal link or anchor is broken (README's included), the
reference pages cover every route and command of the code, and every `eventpipe` command the docs
show is one the CLI accepts."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from eventpipe.cli import build_parser
from eventpipe.docsite import links, reference
from tests.conftest import ROOT

DOC_FILES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
README_MAX_LINES = 200


def test_the_site_builds_strict_and_every_internal_link_and_anchor_resolves(tmp_path):
    """`mkdocs build --strict` (what `make docs` runs) passes: the hooks generate the reference pages and
    check every link and anchor of the built site and of README.md; external links are listed, not fetched."""
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
                           "-d", str(site)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "internal links and anchors checked" in done.stderr
    for page in ("index.html", "getting-started/index.html", "reference/http-api/index.html",
                 "reference/cli/index.html", "contributing/index.html"):
        assert (site / page).is_file(), page
    assert (site / "external-links.txt").read_text().startswith("# External links")


def test_the_readme_stays_a_front_door():
    """README.md is at most 200 lines: the rest lives in the docs site."""
    assert len((ROOT / "README.md").read_text().splitlines()) <= README_MAX_LINES


def _page(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<html><body>{body}</body></html>")


def test_the_link_check_reports_a_missing_page_and_a_missing_anchor_and_lists_external_links(tmp_path):
    _page(tmp_path / "index.html", '<a href="a/">ok</a> <a href="a/#here">ok</a> <a href="#top">ok</a>'
                                   '<h1 id="top">x</h1> <a href="b/">missing page</a> <a href="a/#nowhere">bad</a>'
                                   '<a href="https://example.org/x">ext</a> <a href="mailto:x@y">mail</a>')
    _page(tmp_path / "a" / "index.html", '<h2 id="here">h</h2><a href="../">up</a><a href="/a/#here">root</a>'
                                         '<img src="../missing.png">')
    report = links.check_site(tmp_path)
    assert sorted(report.broken) == sorted([
        "a/index.html: ../missing.png -> no such file (missing.png)",
        "index.html: b/ -> no such file (b/index.html)",
        "index.html: a/#nowhere -> no anchor #nowhere in a/index.html",
    ])
    assert report.external == {"https://example.org/x": {"index.html"}}
    assert report.pages == 2


def test_the_readme_check_reports_a_missing_file_and_an_anchor_missing_from_the_built_page(tmp_path):
    project = tmp_path / "project"
    (project / "docs").mkdir(parents=True)
    (project / "docs" / "guide.md").write_text("# Guide\n")
    _page(project / "site" / "guide" / "index.html", '<h2 id="install">Install</h2>')
    readme = project / "README.md"
    readme.write_text("[ok](docs/guide.md) [ok](docs/guide.md#install) [bad](docs/guide.md#nowhere)\n"
                      "[gone](docs/gone.md) `[not a link](docs/x.md)` [web](https://example.org)\n")
    report = links.LinkReport()
    links.check_readme(readme, project, "docs", project / "site", report)
    assert report.broken == ["README.md: docs/guide.md#nowhere -> no anchor #nowhere in index.html",
                             "README.md: docs/gone.md -> no such file"]
    assert list(report.external) == ["https://example.org"]


def test_the_http_reference_documents_every_operation_of_the_served_document():
    spec = reference.served_openapi()
    page = reference.openapi_markdown(spec)
    for path, item in spec["paths"].items():
        assert f"`{path}`" in page, path
        for method in item:
            assert f"`{method.upper()} " in page
    for name in spec["components"]["schemas"]:
        assert f"{{#schema-{reference.slug(name)}}}" in page, name


def _commands(parser, prog):
    yield prog, parser
    for name, _, sub in reference._subcommands(parser):  # noqa: SLF001
        yield from _commands(sub, f"{prog} {name}")


def test_the_cli_reference_has_every_command_with_its_help():
    parser = build_parser()
    page = reference.cli_markdown(parser)
    commands = list(_commands(parser, "eventpipe"))
    assert len(commands) > 15
    for prog, sub in commands:
        assert f"{{#{reference.command_anchor(prog)}}}" in page, prog
        assert sub.format_usage().split()[1] in page


_FENCE = re.compile(r"```(?:bash|sh)[^\n]*\n(.*?)\n```", re.S)
_EVENTPIPE = re.compile(r"(?:^|[\s(])(?:\.venv/bin/)?eventpipe\s+")


def _arguments(rest: str) -> list[str]:
    """The shell words of one command, up to a pipe, a closing ``)``, ``;`` or a comment outside quotes."""
    lexer = shlex.shlex(rest, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    words = []
    for token in lexer:
        if token and set(token) <= set("();<>|&"):
            break
        words.append(token)
    return words


def doc_commands() -> list[tuple[str, list[str]]]:
    """(file, arguments) of every `eventpipe` command in a bash/sh block of the docs and the README."""
    found = []
    for path in DOC_FILES:
        for block in _FENCE.findall(path.read_text()):
            for line in block.replace("\\\n", " ").splitlines():
                for match in _EVENTPIPE.finditer(line):
                    found.append((path.name, _arguments(line[match.end():])))
    return found


def test_every_eventpipe_command_the_docs_show_is_accepted_by_the_cli():
    commands = doc_commands()
    assert len(commands) > 20
    parser = build_parser()
    refused = []
    for name, args in commands:
        try:
            parser.parse_args(args)
        except SystemExit:
            refused.append(f"{name}: eventpipe {shlex.join(args)}")
    assert refused == []


def test_the_command_check_sees_a_wrong_option():
    with pytest.raises(SystemExit):
        build_parser().parse_args(shlex.split("apps create my-game --events-per-minute 5"))
