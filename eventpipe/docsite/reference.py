"""Reference pages generated from the code at build time: the HTTP API and the CLI.

The HTTP API page is rendered from the document the app serves at ``GET /v1/openapi.json``
(fetched through Chalice's test client: the route itself, no server, no network); the CLI page
from the argparse parsers of ``eventpipe/cli*.py``. Nothing here is written by hand, so the pages
cannot drift from the code.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections import OrderedDict
from typing import Any, Iterator, Mapping

HTTP_API_PAGE = "reference/http-api.md"
CLI_PAGE = "reference/cli.md"
#: The width the CLI help is rendered at (argparse reads COLUMNS).
HELP_COLUMNS = 100
#: How a tag of the document is titled (default: capitalized).
TAG_TITLES = {"posthog": "PostHog", "ingest": "Ingest (native)", "meta": "The document itself"}
_METHODS = ("get", "post", "put", "patch", "delete", "options", "head")


def served_openapi() -> dict[str, Any]:
    """The document ``GET /v1/openapi.json`` answers, asked of the app itself (chalice.test)."""
    from chalice.test import Client

    import app as app_module

    with Client(app_module.app) as client:
        response = client.http.get("/v1/openapi.json")
    if response.status_code != 200:
        raise RuntimeError(f"GET /v1/openapi.json answered {response.status_code}")
    return json.loads(response.body)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def operation_anchor(method: str, path: str) -> str:
    """The anchor of an operation on the HTTP API page, e.g. ``post-v1-events``."""
    return slug(f"{method} {path}")


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _schema_text(schema: Mapping[str, Any]) -> str:
    """A short type for a table cell; a $ref links to its schema section."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#schema-{slug(name)})"
    kind = schema.get("type", "")
    if isinstance(kind, list):
        kind = " \\| ".join(kind)
    extras = []
    if "enum" in schema:
        extras.append("one of " + ", ".join(f"`{v}`" for v in schema["enum"]))
    for key, label in (("minimum", "min"), ("maximum", "max"), ("pattern", "pattern"), ("format", "format"),
                       ("maxLength", "max length")):
        if key in schema:
            extras.append(f"{label} `{schema[key]}`")
    if kind == "array" and isinstance(schema.get("items"), Mapping):
        kind = f"array of {_schema_text(schema['items'])}"
    return f"{kind} ({'; '.join(extras)})" if extras else str(kind)


def _grouped_paths(spec: Mapping[str, Any]) -> "OrderedDict[str, list[tuple[str, str, dict]]]":
    """Tag -> [(method, paths joined, operation)], paths with identical operations merged (aliases)."""
    groups: OrderedDict[str, list[tuple[str, list[str], dict]]] = OrderedDict()
    for path, item in spec["paths"].items():
        for method in _METHODS:
            if method not in item:
                continue
            operation = item[method]
            tag = (operation.get("tags") or ["other"])[0]
            entries = groups.setdefault(tag, [])
            same = {k: v for k, v in operation.items() if k != "operationId"}
            for entry in entries:
                if entry[0] == method and {k: v for k, v in entry[2].items() if k != "operationId"} == same:
                    entry[1].append(path)
                    break
            else:
                entries.append((method, [path], operation))
    return OrderedDict((tag, [(m, ps, op) for m, ps, op in entries]) for tag, entries in groups.items())


def _security(operation: Mapping[str, Any]) -> str:
    requirements = operation.get("security")
    if requirements is None:
        return "as the document's default"
    if not requirements:
        return "none (no key)"
    names = [", ".join(req) if req else "no credentials (the key in the body)" for req in requirements]
    return " or ".join(f"`{n}`" if not n.startswith("no ") else n for n in names)


def openapi_markdown(spec: Mapping[str, Any]) -> str:
    """The HTTP API reference page, in Markdown, from an OpenAPI 3.1 document."""
    info = spec.get("info", {})
    out = [
        "# HTTP API reference",
        "",
        "!!! note \"Generated\"",
        f"    This page is generated at build time from the document the app serves at "
        f"`GET /v1/openapi.json` (OpenAPI {spec.get('openapi', '?')}, API version {info.get('version', '?')}), "
        "itself built from the modules that enforce each limit. Do not edit it: change the code. "
        "Fetch the document itself with `curl -s localhost:8000/v1/openapi.json` on the local stack.",
        "",
        "How to send and read, with examples: [Sending events](../sending-events.md) and "
        "[Querying](../querying.md).",
        "",
        "## Authentication",
        "",
        "| scheme | how |",
        "| --- | --- |",
    ]
    for name, scheme in spec.get("components", {}).get("securitySchemes", {}).items():
        where = (f"header `{scheme['name']}`" if scheme.get("type") == "apiKey"
                 else f"HTTP {scheme.get('scheme', scheme.get('type'))}")
        out.append(f"| `{name}` | {where}: {_cell(scheme.get('description', ''))} |")
    out += ["", "## Routes", "", "| method | path | summary |", "| --- | --- | --- |"]
    groups = _grouped_paths(spec)
    for entries in groups.values():
        for method, paths, operation in entries:
            anchor = operation_anchor(method, paths[0])
            shown = ", ".join(f"`{p}`" for p in paths)
            out.append(f"| {method.upper()} | [{shown}](#{anchor}) | {_cell(operation.get('summary', ''))} |")
    for tag, entries in groups.items():
        out += ["", f"## {TAG_TITLES.get(tag, tag.capitalize())} {{#tag-{slug(tag)}}}"]
        for method, paths, operation in entries:
            out += _operation_markdown(method, paths, operation)
    out += ["", "## Schemas", ""]
    for name, schema in spec.get("components", {}).get("schemas", {}).items():
        out += [f"### {name} {{#schema-{slug(name)}}}", ""]
        if schema.get("description"):
            out += [schema["description"], ""]
        out += ["```json", json.dumps(schema, indent=2, ensure_ascii=False), "```", ""]
    return "\n".join(out) + "\n"


def _operation_markdown(method: str, paths: list[str], operation: Mapping[str, Any]) -> list[str]:
    title = f"{method.upper()} {paths[0]}"
    out = ["", f"### `{title}` {{#{operation_anchor(method, paths[0])}}}", ""]
    if len(paths) > 1:
        out += ["Same operation at: " + ", ".join(f"`{p}`" for p in paths[1:]), ""]
    if operation.get("operationId"):
        out += [f"operationId `{operation['operationId']}`" + (" (each path has its own)" if len(paths) > 1 else ""), ""]
    if operation.get("summary"):
        out += [f"*{operation['summary']}*", ""]
    if operation.get("description"):
        out += [operation["description"], ""]
    out += [f"**Key:** {_security(operation)}", ""]
    params = operation.get("parameters") or []
    if params:
        out += ["| parameter | in | required | type | description |", "| --- | --- | --- | --- | --- |"]
        for p in params:
            out.append(f"| `{p['name']}` | {p['in']} | {'yes' if p.get('required') else 'no'} | "
                       f"{_cell(_schema_text(p.get('schema', {})))} | {_cell(p.get('description', ''))} |")
        out.append("")
    body = operation.get("requestBody")
    if body:
        out += ["**Request body**" + (" (required)" if body.get("required") else "") + ":", ""]
        for media, content in body.get("content", {}).items():
            out.append(f"- `{media}`: {_schema_text(content.get('schema', {}))}"
                       + (f" ({content['schema']['description']})" if content.get("schema", {}).get("description")
                          and "$ref" not in content["schema"] else ""))
        out.append("")
    out += ["| status | meaning | body | headers |", "| --- | --- | --- | --- |"]
    for status, response in operation.get("responses", {}).items():
        bodies = "; ".join(f"`{media}` {_schema_text(c.get('schema', {}))}"
                           for media, c in (response.get("content") or {}).items())
        headers = ", ".join(f"`{h}`" for h in (response.get("headers") or {}))
        out.append(f"| {status} | {_cell(response.get('description', ''))} | {bodies} | {headers} |")
    return out


# ------------------------------------------------------------------------------------------------ CLI
def _subcommands(parser: argparse.ArgumentParser) -> Iterator[tuple[str, str, argparse.ArgumentParser]]:
    """(name, help, parser) of each subcommand, in the order they were added."""
    for action in parser._actions:  # noqa: SLF001 - argparse keeps subparsers only here
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            helps = {choice.dest: choice.help for choice in action._choices_actions}  # noqa: SLF001
            for name, sub in action.choices.items():
                yield name, helps.get(name) or "", sub


def _help(parser: argparse.ArgumentParser) -> str:
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(HELP_COLUMNS)
    try:
        return parser.format_help().rstrip()
    finally:
        if previous is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = previous


def command_anchor(words: str) -> str:
    """The anchor of a command on the CLI page, e.g. ``eventpipe-apps-create``."""
    return slug(words)


def cli_markdown(parser: argparse.ArgumentParser) -> str:
    """The CLI reference page, in Markdown: every command's ``--help``, from the parsers."""
    out = [
        "# CLI reference",
        "",
        "!!! note \"Generated\"",
        "    This page is generated at build time from the argparse parsers of `eventpipe/cli*.py`: each "
        "section is the command's `--help`. Do not edit it: change the parser.",
        "",
        "Commands that touch AWS use the local stack (`make run`) unless `--aws` is given before the "
        "command (`eventpipe --aws apps create my-game`). Run them as `.venv/bin/eventpipe ...` from the "
        "project folder.",
        "",
        "| command | what it does |",
        "| --- | --- |",
    ]
    sections: list[str] = []

    def walk(prog: str, sub: argparse.ArgumentParser, text: str, depth: int) -> None:
        children = list(_subcommands(sub))
        out.append(f"| [`{prog}`](#{command_anchor(prog)}) | {_cell(text)} |")
        sections.extend(["", f"{'#' * min(depth, 4)} `{prog}` {{#{command_anchor(prog)}}}", ""])
        if text:
            sections.extend([text[0].upper() + text[1:] + ".", ""])
        sections.extend(["```text", _help(sub), "```"])
        for name, child_text, child in children:
            walk(f"{prog} {name}", child, child_text, depth + 1)

    for name, text, sub in _subcommands(parser):
        walk(f"{parser.prog} {name}", sub, text, 2)
    top = ["", f"## `{parser.prog}` {{#{command_anchor(parser.prog)}}}", "", "```text", _help(parser), "```"]
    return "\n".join(out + top + sections) + "\n"


def cli_parser() -> argparse.ArgumentParser:
    from eventpipe.cli import build_parser
    return build_parser()
