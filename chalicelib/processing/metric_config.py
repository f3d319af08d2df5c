"""Metric definitions: load and validate ``chalicelib/metrics.yaml``.

The YAML file documents every field in its comments.  In short, a metric is::

    - name: class_activity                  # ^[a-z][a-z0-9_]{0,63}$, unique
      filter:                               # optional, conditions are ANDed
        event_types: [level_up, purchase]   # keep only these event types
        has: [attributes.character_class]   # attribute present and non-null
        equals: {attributes.platform: ios}  # equality with a scalar
      key: [attributes.character_class]     # group-by fields (app_id implied)
      window: {tumbling: 1m}                # or {hopping: {size: 5m, slide: 1m}}
      measures:                             # output name -> aggregate
        count: count
        value_avg: avg(attributes.value)
        value_p99: percentile(attributes.value, 99)
        users: distinct(user_id)

The aggregates are the measure kinds of the registry (:mod:`.measures`).
Fields are ``event_id``, ``event_type``, ``app_id``, ``user_id`` (strings),
``event_time``, ``received_at``, ``client_event_time`` (integers) and
``attributes.<name>`` (a top-level key of the attributes object).  A key may
also be ``geohash(<lat field>, <lon field>, <precision>)``.

Every problem raises :class:`MetricConfigError` naming the metric and field.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

import yaml

from .errors import DurationError, MetricConfigError
from .measures import MEASURES, metric_states
from .metric_model import (INTEGER_COLUMNS, RESERVED_NAMES, STRING_COLUMNS, Condition, Field, FilterDef, GeohashExpr,
                           KeyDef, MeasureDef, MetricDef, MetricSet, LatenessSettings,
                           attribute_types)
from .windows import WindowSpec, parse_duration

__all__ = ["DEFAULT_PATH", "INTEGER_COLUMNS", "RESERVED_NAMES", "STRING_COLUMNS",
           "Condition", "Field", "FilterDef", "GeohashExpr", "KeyDef", "MeasureDef", "MetricDef", "MetricSet",
           "LatenessSettings", "attribute_types", "load_metrics", "parse_metrics", "parse_metrics_yaml"]

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "metrics.yaml"

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_ATTRIBUTE = re.compile(r"^attributes\.([A-Za-z_][A-Za-z0-9_]{0,63})$")
_CALL = re.compile(r"^\s*([a-z_]+)\s*\((.*)\)\s*$")
_GEOHASH = re.compile(r"^\s*geohash\s*\(\s*([^,\s]+)\s*,\s*([^,\s]+)\s*,\s*(\d+)\s*\)\s*$")


# ------------------------------------------------------------------ parsing
def load_metrics(path: str | Path | None = None) -> MetricSet:
    """Load and validate a metrics YAML file (default ``chalicelib/metrics.yaml``).

    Raises:
        MetricConfigError: the file is not valid YAML or a definition is bad.
    """
    text = Path(path or DEFAULT_PATH).read_text(encoding="utf-8")
    return parse_metrics_yaml(text)


def parse_metrics_yaml(text: str) -> MetricSet:
    """Validate metrics given as YAML text (see :func:`load_metrics`)."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise MetricConfigError(None, "<yaml>", f"not valid YAML: {exc}") from exc
    return parse_metrics(doc)


def parse_metrics(doc: Any) -> MetricSet:
    """Validate an already parsed metrics document (a mapping).

    Raises:
        MetricConfigError: naming the metric and field of the first problem.
    """
    if not isinstance(doc, Mapping):
        raise MetricConfigError(None, "<document>", "expected a mapping with 'metrics'")
    _no_unknown(None, "", doc, {"version", "settings", "metrics"})
    if doc.get("version", 1) != 1:
        raise MetricConfigError(None, "version", f"unsupported version {doc.get('version')!r}, expected 1")
    settings = _settings(doc.get("settings") or {})
    raw = doc.get("metrics")
    if not isinstance(raw, list) or not raw:
        raise MetricConfigError(None, "metrics", "expected a non-empty list of metrics")
    metrics: list[MetricDef] = []
    for i, item in enumerate(raw):
        metric = _metric(i, item)
        if metric.name in {m.name for m in metrics}:
            raise MetricConfigError(metric.name, "name", "duplicate metric name")
        metrics.append(metric)
    return MetricSet(tuple(metrics), settings)


def _no_unknown(metric: str | None, prefix: str, mapping: Mapping, allowed: set[str]) -> None:
    for key in mapping:
        if key not in allowed:
            raise MetricConfigError(metric, f"{prefix}{key}", f"unknown field; expected one of {sorted(allowed)}")


def _duration(metric: str | None, where: str, value: Any) -> int:
    try:
        return parse_duration(value)
    except DurationError as exc:
        raise MetricConfigError(metric, where, str(exc)) from None


def _settings(raw: Any) -> LatenessSettings:
    if not isinstance(raw, Mapping):
        raise MetricConfigError(None, "settings", "expected a mapping")
    _no_unknown(None, "settings.", raw, {"allowed_lateness", "max_lateness"})
    defaults = LatenessSettings()
    allowed = _duration(None, "settings.allowed_lateness", raw["allowed_lateness"]) \
        if "allowed_lateness" in raw else defaults.allowed_lateness_ms
    max_late = _duration(None, "settings.max_lateness", raw["max_lateness"]) \
        if "max_lateness" in raw else defaults.max_lateness_ms
    if max_late < allowed:
        raise MetricConfigError(None, "settings.max_lateness", "must not be shorter than allowed_lateness")
    return LatenessSettings(allowed, max_late)


def _metric(index: int, raw: Any) -> MetricDef:
    if not isinstance(raw, Mapping):
        raise MetricConfigError(f"#{index}", "<metric>", "expected a mapping")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise MetricConfigError(f"#{index}" if not isinstance(name, str) else name, "name",
                                "required, must match ^[a-z][a-z0-9_]{0,63}$")
    _no_unknown(name, "", raw, {"name", "description", "filter", "key", "window", "measures"})
    window = _window(name, raw.get("window"))
    keys = _keys(name, raw.get("key", []))
    measures = _measures(name, raw.get("measures"))
    taken = {k.name for k in keys}
    for m in measures:
        if m.name in taken:
            raise MetricConfigError(name, f"measures.{m.name}", "name already used by a key")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise MetricConfigError(name, "description", "expected a string")
    states = tuple((f, state.suffix) for f, state in metric_states(measures))
    return MetricDef(name, window, keys, measures, _filter(name, raw.get("filter")), description, states)


def _window(metric: str, raw: Any) -> WindowSpec:
    if not isinstance(raw, Mapping) or len(raw) != 1 or next(iter(raw)) not in ("tumbling", "hopping"):
        raise MetricConfigError(metric, "window", "expected exactly one of {tumbling: <dur>} or "
                                "{hopping: {size: <dur>, slide: <dur>}}")
    if "tumbling" in raw:
        return WindowSpec.tumbling(_duration(metric, "window.tumbling", raw["tumbling"]))
    hop = raw["hopping"]
    if not isinstance(hop, Mapping):
        raise MetricConfigError(metric, "window.hopping", "expected {size: <dur>, slide: <dur>}")
    _no_unknown(metric, "window.hopping.", hop, {"size", "slide"})
    for part in ("size", "slide"):
        if part not in hop:
            raise MetricConfigError(metric, f"window.hopping.{part}", "required")
    size = _duration(metric, "window.hopping.size", hop["size"])
    slide = _duration(metric, "window.hopping.slide", hop["slide"])
    if slide > size or size % slide:
        raise MetricConfigError(metric, "window.hopping.slide",
                                f"size ({hop['size']}) must be a multiple of slide ({hop['slide']})")
    return WindowSpec.hopping(size, slide)


def _field(metric: str, where: str, text: Any) -> Field:
    if not isinstance(text, str):
        raise MetricConfigError(metric, where, f"expected a field name, got {text!r}")
    text = text.strip()
    if text in STRING_COLUMNS or text in INTEGER_COLUMNS or _ATTRIBUTE.match(text):
        return Field(text)
    raise MetricConfigError(metric, where, f"unknown field {text!r}; expected one of "
                            f"{', '.join(STRING_COLUMNS + INTEGER_COLUMNS)} or attributes.<name>")


def _numeric_field(metric: str, where: str, text: Any) -> Field:
    f = _field(metric, where, text)
    if f.path in STRING_COLUMNS:
        raise MetricConfigError(metric, where, f"{f.path} is a string; a number is needed here")
    return f


def _keys(metric: str, raw: Any) -> tuple[KeyDef, ...]:
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list):
        raise MetricConfigError(metric, "key", "expected a list of fields")
    keys: list[KeyDef] = []
    for i, item in enumerate(raw):
        where = f"key[{i}]"
        name = None
        if isinstance(item, Mapping):
            _no_unknown(metric, f"{where}.", item, {"name", "expr"})
            name, item = item.get("name"), item.get("expr")
            if not isinstance(name, str) or not _valid_output_name(name):
                raise MetricConfigError(metric, f"{where}.name", "must match ^[a-z][a-z0-9_]*$ without '__'")
        if not isinstance(item, str):
            raise MetricConfigError(metric, where, f"expected a field or geohash(...), got {item!r}")
        geo = _GEOHASH.match(item)
        if geo:
            precision = int(geo.group(3))
            if not 1 <= precision <= 12:
                raise MetricConfigError(metric, where, f"geohash precision must be 1..12, got {precision}")
            expr: Field | GeohashExpr = GeohashExpr(_numeric_field(metric, where, geo.group(1)),
                                                   _numeric_field(metric, where, geo.group(2)), precision)
            default = f"geohash{precision}"
        elif item.strip().startswith("geohash"):
            raise MetricConfigError(metric, where, f"expected geohash(<lat>, <lon>, <precision>), got {item!r}")
        else:
            expr = _field(metric, where, item)
            default = expr.attribute or expr.path
        name = name or default.lower()
        if name == "app_id" and expr == Field("app_id"):
            raise MetricConfigError(metric, where, "app_id is always part of the key; do not list it")
        if not _valid_output_name(name):
            raise MetricConfigError(metric, where, f"output name {name!r} is reserved or invalid; "
                                    "give the key a name: {name: ..., expr: ...}")
        if name in {k.name for k in keys}:
            raise MetricConfigError(metric, where, f"duplicate key name {name!r}")
        keys.append(KeyDef(name, expr))
    return tuple(keys)


def _valid_output_name(name: str) -> bool:
    return bool(_NAME.match(name)) and "__" not in name and name not in RESERVED_NAMES


def _measures(metric: str, raw: Any) -> tuple[MeasureDef, ...]:
    if not isinstance(raw, Mapping) or not raw:
        raise MetricConfigError(metric, "measures", "expected a non-empty mapping of name: aggregate")
    out: list[MeasureDef] = []
    for name, expr in raw.items():
        where = f"measures.{name}"
        if not isinstance(name, str) or not _valid_output_name(name):
            raise MetricConfigError(metric, where, "measure name must match ^[a-z][a-z0-9_]*$ without '__' "
                                    f"and not be one of {sorted(RESERVED_NAMES)}")
        if not isinstance(expr, str):
            raise MetricConfigError(metric, where, f"expected an aggregate like 'sum(attributes.value)', got {expr!r}")
        text = expr.strip()
        if text in ("count", "count()", "count(*)"):
            out.append(MeasureDef(name, "count"))
            continue
        call = _CALL.match(text)
        kind = MEASURES.get(call.group(1)) if call else None
        if kind is None or kind.field is None:
            usages = ", ".join(k.usage for k in MEASURES.values())
            raise MetricConfigError(metric, where, f"unknown aggregate {expr!r}; expected one of {usages}")
        arg, *rest = [part.strip() for part in call.group(2).split(",")]
        f = _field(metric, where, arg) if kind.field == "text" else _numeric_field(metric, where, arg)
        if kind.field == "text" and f.is_numeric_column:
            raise MetricConfigError(metric, where, f"{kind.func}() takes a string field, not {f.path}")
        try:
            args = kind.parse_args(tuple(rest))
        except ValueError as exc:
            raise MetricConfigError(metric, where, str(exc)) from None
        out.append(MeasureDef(name, kind.func, f, args, field_kind=kind.field))
    return tuple(out)


def _filter(metric: str, raw: Any) -> FilterDef:
    if raw is None:
        return FilterDef()
    if not isinstance(raw, Mapping):
        raise MetricConfigError(metric, "filter", "expected a mapping")
    _no_unknown(metric, "filter.", raw, {"event_types", "has", "equals"})
    types = raw.get("event_types")
    if types is not None:
        if isinstance(types, str):
            types = [types]
        if not isinstance(types, list) or not types:
            raise MetricConfigError(metric, "filter.event_types", "expected a non-empty list of event types")
        for t in types:
            if not isinstance(t, str) or not _EVENT_TYPE.match(t):
                raise MetricConfigError(metric, "filter.event_types", f"invalid event type {t!r}")
        types = tuple(types)
    conditions: list[Condition] = []
    has = raw.get("has", [])
    for i, f in enumerate([has] if isinstance(has, str) else has or []):
        conditions.append(Condition(_field(metric, f"filter.has[{i}]", f), "has"))
    equals = raw.get("equals", {})
    if not isinstance(equals, Mapping):
        raise MetricConfigError(metric, "filter.equals", "expected a mapping of field: value")
    for f, value in equals.items():
        where = f"filter.equals.{f}"
        if not isinstance(value, (str, int, float, bool)):
            raise MetricConfigError(metric, where, f"expected a string, number or boolean, got {value!r}")
        fld = _field(metric, where, f)
        if fld.path in STRING_COLUMNS and not isinstance(value, str):
            raise MetricConfigError(metric, where, f"{fld.path} is a string; compare it with a string")
        if fld.is_numeric_column and (isinstance(value, (str, bool))):
            raise MetricConfigError(metric, where, f"{fld.path} is a number; compare it with a number")
        conditions.append(Condition(fld, "equals", value))
    return FilterDef(types, tuple(conditions))
