"""The published OpenAPI document as tests use it: load it, and check a response against it."""

from __future__ import annotations

import re
from typing import Any, Mapping

import jsonschema
import orjson


def spec_of(app_module) -> dict[str, Any]:
    """The document the app serves (through its container)."""
    return app_module.container.openapi


def operation_for(spec: Mapping[str, Any], path: str, method: str) -> tuple[str, dict[str, Any]]:
    """The templated path and operation that a concrete ``path`` matches."""
    for template, item in spec["paths"].items():
        pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path.split("?", 1)[0]) and method.lower() in item:
            return template, item[method.lower()]
    raise AssertionError(f"{method} {path} is not in the spec")


def check_response(spec: Mapping[str, Any], path: str, method: str, status: int, headers: Mapping[str, str],
                   body: bytes | str) -> None:
    """Raise AssertionError unless the status is documented for the route, the content type is one
    of the documented ones, its required headers are present and a JSON body matches the schema."""
    template, operation = operation_for(spec, path, method)
    responses = operation["responses"]
    assert str(status) in responses, f"{method} {template}: {status} is not documented ({sorted(responses)})"
    response = responses[str(status)]
    lowered = {k.lower(): v for k, v in headers.items()}
    for name, header in response.get("headers", {}).items():
        if header.get("required"):
            assert name.lower() in lowered, f"{method} {template} {status}: no {name} header"
    media = (lowered.get("content-type") or "").split(";")[0].strip()
    content = response.get("content", {})
    assert media in content, f"{method} {template} {status}: content type {media!r} not in {sorted(content)}"
    if media == "application/json":
        # The response's schema with the document's components beside it, so "#/components/..." resolves.
        schema = {**content[media]["schema"], "$id": "urn:eventpipe:contract", "components": spec["components"]}
        validator = jsonschema.Draft202012Validator(schema)
        document = orjson.loads(body)
        errors = sorted(validator.iter_errors(document), key=lambda e: list(e.path))
        assert not errors, f"{method} {template} {status}: {errors[0].message} at {list(errors[0].path)}"
