"""Metric definitions as frozen dataclasses (the validated model).

:mod:`.metric_config` builds these from ``metrics.yaml``; everything else in
the package reads them.  See that module and the YAML's comments for the
meaning of each field.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property

from .windows import WindowSpec

STRING_COLUMNS = ("event_id", "event_type", "app_id", "user_id")
INTEGER_COLUMNS = ("event_time", "received_at", "client_event_time")
#: Output columns every partials table has; no key or measure may use them.
RESERVED_NAMES = frozenset({"app_id", "window_start", "window_end", "event_count", "late_count"})
#: Version of what the rollup rows mean beyond the definition itself: the sketch formats (HLL
#: registers, quantile buckets), the finalizer's dedupe rule. Bump it with any change that makes
#: the same definition produce other rows; every metric then gets a fresh rollup tree.
ROLLUP_FORMAT = 1


@dataclass(frozen=True)
class Field:
    """A field of the canonical event, e.g. ``user_id`` or ``attributes.value``.

    Attributes:
        path: the field as written in the YAML.
    """

    path: str

    @property
    def attribute(self) -> str | None:
        """The attribute name for ``attributes.<name>``, else None."""
        return self.path[len("attributes."):] if self.path.startswith("attributes.") else None

    @property
    def column_prefix(self) -> str:
        """Name stem of this field's state columns (``attributes_value``)."""
        return self.path.replace(".", "_")

    @property
    def is_numeric_column(self) -> bool:
        """True for the integer event columns."""
        return self.path in INTEGER_COLUMNS


@dataclass(frozen=True)
class GeohashExpr:
    """A derived key: the geohash of two numeric fields.

    Attributes:
        lat: latitude field.
        lon: longitude field.
        precision: geohash length, 1..12.
    """

    lat: Field
    lon: Field
    precision: int

    @property
    def path(self) -> str:
        """The expression as it is written in the YAML."""
        return f"geohash({self.lat.path}, {self.lon.path}, {self.precision})"


@dataclass(frozen=True)
class KeyDef:
    """A group-by key: the output column ``name`` computed by ``expr``."""

    name: str
    expr: Field | GeohashExpr


@dataclass(frozen=True)
class Condition:
    """One filter condition.

    Attributes:
        field: the field tested.
        op: ``"has"`` (present and non-null) or ``"equals"``.
        value: the scalar compared with for ``equals`` (str, int, float, bool).
    """

    field: Field
    op: str
    value: str | int | float | bool | None = None


@dataclass(frozen=True)
class FilterDef:
    """Which events a metric sees; all conditions must hold.

    Attributes:
        event_types: allowed event types, or None for all.
        conditions: ``has``/``equals`` conditions.
    """

    event_types: tuple[str, ...] | None = None
    conditions: tuple[Condition, ...] = ()


@dataclass(frozen=True)
class MeasureDef:
    """One output measure: ``name = func(field, *args)``.

    Attributes:
        name: output column name.
        func: the measure kind, a key of ``measures.MEASURES``.
        field: the field it aggregates; None for count.
        args: the kind's further arguments, normalized (``("99",)`` for a percentile).
    """

    name: str
    func: str
    field: Field | None = None
    args: tuple[str, ...] = ()
    #: How the measure reads its field: ``"number"`` or ``"text"`` (the registry's kind decides it).
    field_kind: str = "number"

    @property
    def expression(self) -> str:
        """The measure as ``metrics.yaml`` writes it, e.g. ``percentile(attributes.value, 99)``."""
        if self.field is None:
            return self.func
        return f"{self.func}({', '.join([self.field.path, *self.args])})"


@dataclass(frozen=True)
class MetricDef:
    """One windowed keyed aggregation.

    Attributes:
        name: metric name (also the partials' identity).
        window: the event-time window.
        keys: group-by keys after the implicit ``app_id``.
        measures: output measures, in output order.
        filter: which events are aggregated.
        description: free text.
    """

    name: str
    window: WindowSpec
    keys: tuple[KeyDef, ...]
    measures: tuple[MeasureDef, ...]
    filter: FilterDef = field(default_factory=FilterDef)
    description: str = ""
    #: ``(field, state suffix)`` of each state column of the partials, in schema order (from the
    #: measure registry, filled in by ``metric_config``: this model does not import the registry).
    states: tuple[tuple[Field, str], ...] = ()
    #: The set's lateness settings (``MetricSet`` fills them in): they decide which events a
    #: final window holds and how many count as late, so they are part of the fingerprint.
    lateness: LatenessSettings | None = None

    @cached_property
    def fingerprint(self) -> str:
        """A stable hash of everything that determines this metric's rows (12 hex digits).

        Filter, keys, window, measures, state columns, lateness settings and
        :data:`ROLLUP_FORMAT`; not the description. Rollups live under
        ``rollups/<name>/def=<fingerprint>/``, so a changed definition reads and
        writes a fresh tree and never mixes windows computed under two definitions.
        """
        return definition_fingerprint(self)


def definition_fingerprint(metric: MetricDef) -> str:
    """See :attr:`MetricDef.fingerprint`."""
    spec = dataclasses.asdict(dataclasses.replace(metric, description="", lateness=None))
    spec.pop("description")
    spec["lateness"] = dataclasses.asdict(metric.lateness or LatenessSettings())
    spec["format"] = ROLLUP_FORMAT
    # Types matter (1 vs true vs "1" in a filter): tag scalars with their type name.
    canonical = json.dumps(_typed(spec), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def _typed(value):  # noqa: ANN001, ANN202 - JSON-like values
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_typed(v) for v in value]
    return [type(value).__name__, value]


@dataclass(frozen=True)
class LatenessSettings:
    """Global lateness settings, in milliseconds.

    Attributes:
        allowed_lateness_ms: the watermark trails the newest event time by
            this much (see ``windows.watermark``); default 5 minutes.
        max_lateness_ms: events older than this relative to the caller's
            reference time go to bad rows; default 7 days.
    """

    allowed_lateness_ms: int = 5 * 60_000
    max_lateness_ms: int = 7 * 86_400_000


@dataclass(frozen=True)
class MetricSet:
    """A validated set of metrics plus settings."""

    metrics: tuple[MetricDef, ...]
    settings: LatenessSettings = field(default_factory=LatenessSettings)

    def __post_init__(self) -> None:
        # Each metric carries the set's lateness settings (part of its fingerprint).
        object.__setattr__(self, "metrics", tuple(
            m if m.lateness == self.settings else dataclasses.replace(m, lateness=self.settings)
            for m in self.metrics))

    def __getitem__(self, name: str) -> MetricDef:
        for metric in self.metrics:
            if metric.name == name:
                return metric
        raise KeyError(name)

    @property
    def names(self) -> tuple[str, ...]:
        """Metric names in file order."""
        return tuple(m.name for m in self.metrics)

    @property
    def attribute_types(self) -> dict[str, str]:
        """Attributes the metrics read, with the type to extract them as.

        ``"DOUBLE"`` when only used as a number (measures, geohash, numeric
        equality), otherwise ``"VARCHAR"`` (the aggregation casts it to a
        number where needed).  Pass this to ``decode_records`` so attributes
        are parsed in the same pass as the events.
        """
        return attribute_types(self.metrics)


def attribute_types(metrics: tuple[MetricDef, ...] | list[MetricDef]) -> dict[str, str]:
    """See :attr:`MetricSet.attribute_types`."""
    uses: dict[str, set[str]] = {"number": set(), "text": set(), "any": set()}
    for metric in metrics:
        for f, kind in _field_uses(metric):
            if f.attribute:
                uses[kind].add(f.attribute)
    numeric, text = uses["number"], uses["text"]
    names = sorted(numeric | text | uses["any"])
    return {a: ("DOUBLE" if a in numeric and a not in text else "VARCHAR") for a in names}


def _field_uses(metric: MetricDef) -> list[tuple[Field, str]]:
    uses: list[tuple[Field, str]] = []
    for key in metric.keys:
        if isinstance(key.expr, GeohashExpr):
            uses += [(key.expr.lat, "number"), (key.expr.lon, "number")]
        else:
            uses.append((key.expr, "text"))
    for m in metric.measures:
        if m.field is not None:
            uses.append((m.field, m.field_kind))
    for c in metric.filter.conditions:
        if c.op == "has":
            uses.append((c.field, "any"))
            continue
        numeric = isinstance(c.value, (int, float)) and not isinstance(c.value, bool)
        uses.append((c.field, "number" if numeric else "text"))
    return uses
