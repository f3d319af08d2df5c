"""The QuickSight data set columns and dashboard sheet, derived from metrics.yaml and the measure registry.

Nothing here names a metric: every metric of ``metrics.yaml`` gets a data set
over its Athena view (identifier = the view's name) whose columns follow its
keys and measures, typed by each measure kind's ``quicksight_type``; and its
visuals follow from its shape:

* a metric keyed by a geohash: a heat map (cells by hour) of its first
  measure, and a table of every measure per cell;
* any other metric: a line chart over time (``window_start``, or
  ``window_end`` for hopping windows: "the last 5 minutes" at that instant)
  of its first measure, one line per value of its first key when it has one;
* a metric with a (non-geohash) key and measures of a numeric field (sum,
  min, max, avg, percentile): a bar chart of those measures per key value.

Whenever a visual combines several rows (windows, apps, keys), each
measure uses its kind's ``quicksight_aggregation``: SUM for counts and sums,
MIN / MAX / AVERAGE for min / max / avg, MAX for distinct counts and
percentiles (they do not add up: the busiest / slowest window shows).
"""

from __future__ import annotations

from typing import Any, Iterable

from chalicelib.processing.measures import MEASURES
from chalicelib.processing.metric_model import INTEGER_COLUMNS, Field, GeohashExpr

SHEET_ID = "overview"


def _metrics(metrics=None):  # noqa: ANN001, ANN202 - a MetricSet
    if metrics is None:
        from chalicelib.processing.metric_config import load_metrics
        metrics = load_metrics()
    return metrics


def view_names(metrics=None) -> tuple[str, ...]:  # noqa: ANN001
    """The metric views (one data set each), in ``metrics.yaml`` order."""
    return tuple(_metrics(metrics).names)


# -------------------------------------------------------------- columns
def view_columns(metric) -> list[dict]:  # noqa: ANN001 - a MetricDef
    """InputColumns of a metric's Athena view, from its definition.

    ``app_id, window_start, window_end, <keys>, <measures>, late_count`` as
    :func:`chalicelib.processing.partials.finalize` orders them, with the
    window bounds as timestamps (the views convert the epoch-ms columns).
    """
    cols = [{"Name": "app_id", "Type": "STRING"}, {"Name": "window_start", "Type": "DATETIME"},
            {"Name": "window_end", "Type": "DATETIME"}]
    for key in metric.keys:
        numeric = isinstance(key.expr, Field) and key.expr.path in INTEGER_COLUMNS
        cols.append({"Name": key.name, "Type": "INTEGER" if numeric else "STRING"})
    cols += [{"Name": m.name, "Type": MEASURES[m.func].quicksight_type} for m in metric.measures]
    cols.append({"Name": "late_count", "Type": "INTEGER"})
    return cols


def view_columns_by_name(views: Iterable[str] | None = None, metrics=None) -> dict[str, list[dict]]:  # noqa: ANN001
    """``{view: InputColumns}`` for the metrics of ``metrics.yaml`` (or ``metrics``)."""
    metrics = _metrics(metrics)
    return {view: view_columns(metrics[view]) for view in (views or metrics.names)}


# ------------------------------------------------------------- fields
def _col(data_set: str, column: str) -> dict:
    return {"DataSetIdentifier": data_set, "ColumnName": column}


def _title(text: str) -> dict:
    return {"Visibility": "VISIBLE", "FormatText": {"PlainText": text}}


def _date(field_id: str, data_set: str, column: str, granularity: str = "MINUTE") -> dict:
    return {"DateDimensionField": {"FieldId": field_id, "Column": _col(data_set, column),
                                   "DateGranularity": granularity}}


def _category(field_id: str, data_set: str, column: str) -> dict:
    return {"CategoricalDimensionField": {"FieldId": field_id, "Column": _col(data_set, column)}}


def _measure(field_id: str, data_set: str, measure) -> dict:  # noqa: ANN001 - a MeasureDef
    aggregation = MEASURES[measure.func].quicksight_aggregation
    return {"NumericalMeasureField": {"FieldId": field_id, "Column": _col(data_set, measure.name),
                                      "AggregationFunction": {"SimpleNumericalAggregation": aggregation}}}


def _sort(field_id: str, direction: str) -> dict:
    return {"FieldSort": {"FieldId": field_id, "Direction": direction}}


def _slug(text: str) -> str:
    return text.replace("_", "-")


def _labels(visual_id: str, measures) -> list[dict]:  # noqa: ANN001
    """Table labels that say how non-additive measures were combined, e.g. ``users (max)``."""
    return [{"FieldId": f"{visual_id}-{_slug(m.name)}",
             "CustomLabel": f"{m.name} ({MEASURES[m.func].quicksight_aggregation.lower()})"}
            for m in measures if MEASURES[m.func].quicksight_aggregation != "SUM"]


# ------------------------------------------------------------ visuals
def _over_time(metric) -> dict:  # noqa: ANN001 - a MetricDef
    view, slug, first = metric.name, _slug(metric.name), metric.measures[0]
    visual_id = f"{slug}-over-time"
    column = "window_start" if metric.window.is_tumbling else "window_end"
    granularity = "MINUTE" if metric.window.slide_ms < 3_600_000 else "HOUR"
    wells: dict[str, Any] = {"Category": [_date(f"{visual_id}-time", view, column, granularity)],
                             "Values": [_measure(f"{visual_id}-{_slug(first.name)}", view, first)]}
    title = f"{view}: {first.name} per {granularity.lower()}"
    if metric.keys:
        key = metric.keys[0].name
        wells["Colors"] = [_category(f"{visual_id}-{_slug(key)}", view, key)]
        title += f" by {key}"
    return {"LineChartVisual": {
        "VisualId": visual_id, "Title": _title(title),
        "ChartConfiguration": {"FieldWells": {"LineChartAggregatedFieldWells": wells},
                               "SortConfiguration": {"CategorySort": [_sort(f"{visual_id}-time", "ASC")]},
                               "Type": "LINE"}}}


def _by_key(metric, key: str) -> dict | None:  # noqa: ANN001
    values = [m for m in metric.measures if MEASURES[m.func].field == "number"]
    if not values:
        return None
    view, visual_id = metric.name, f"{_slug(metric.name)}-by-key"
    config: dict[str, Any] = {
        "FieldWells": {"BarChartAggregatedFieldWells": {
            "Category": [_category(f"{visual_id}-{_slug(key)}", view, key)],
            "Values": [_measure(f"{visual_id}-{_slug(m.name)}", view, m) for m in values]}},
        "SortConfiguration": {"CategorySort": [_sort(f"{visual_id}-{_slug(values[0].name)}", "DESC")]},
        "Orientation": "HORIZONTAL", "BarsArrangement": "CLUSTERED"}
    return {"BarChartVisual": {"VisualId": visual_id,
                               "Title": _title(f"{view}: {', '.join(m.name for m in values)} by {key}"),
                               "ChartConfiguration": config}}


def _geohash_visuals(metric, key: str) -> list[dict]:  # noqa: ANN001
    view, slug, first = metric.name, _slug(metric.name), metric.measures[0]
    heat_id, table_id = f"{slug}-heat-map", f"{slug}-table"
    heat = {"HeatMapVisual": {
        "VisualId": heat_id, "Title": _title(f"{view}: {first.name} per {key} and hour"),
        "ChartConfiguration": {
            "FieldWells": {"HeatMapAggregatedFieldWells": {
                "Rows": [_category(f"{heat_id}-{_slug(key)}", view, key)],
                "Columns": [_date(f"{heat_id}-hour", view, "window_start", "HOUR")],
                "Values": [_measure(f"{heat_id}-{_slug(first.name)}", view, first)]}},
            "SortConfiguration": {"HeatMapRowSort": [_sort(f"{heat_id}-{_slug(first.name)}", "DESC")],
                                  "HeatMapColumnSort": [_sort(f"{heat_id}-hour", "ASC")],
                                  "HeatMapRowItemsLimitConfiguration": {"ItemsLimit": 50,
                                                                        "OtherCategories": "EXCLUDE"}}}}}
    table_config: dict[str, Any] = {
        "FieldWells": {"TableAggregatedFieldWells": {
            "GroupBy": [_category(f"{table_id}-{_slug(key)}", view, key)],
            "Values": [_measure(f"{table_id}-{_slug(m.name)}", view, m) for m in metric.measures]}},
        "SortConfiguration": {"RowSort": [_sort(f"{table_id}-{_slug(first.name)}", "DESC")]}}
    if _labels(table_id, metric.measures):
        table_config["FieldOptions"] = {"SelectedFieldOptions": _labels(table_id, metric.measures)}
    table = {"TableVisual": {"VisualId": table_id, "Title": _title(f"{view}: {key} by {first.name}"),
                             "ChartConfiguration": table_config}}
    return [heat, table]


def visuals(metrics=None) -> list[dict]:  # noqa: ANN001
    """The overview sheet's visuals for every metric; data set identifiers are the view names."""
    out: list[dict] = []
    for metric in _metrics(metrics).metrics:
        geo = [k.name for k in metric.keys if isinstance(k.expr, GeohashExpr)]
        if geo:
            out += _geohash_visuals(metric, geo[0])
            continue
        out.append(_over_time(metric))
        by_key = _by_key(metric, metric.keys[0].name) if metric.keys else None
        if by_key is not None:
            out.append(by_key)
    return out


def visual_id(visual: dict) -> str:
    return next(iter(visual.values()))["VisualId"]


def grid(visuals: list[dict]) -> list[dict]:
    """Full-width first visual, then two per row on the 36-column grid."""
    elements = [{"ElementId": visual_id(v), "ElementType": "VISUAL", "ColumnSpan": 36 if i == 0 else 18,
                 "RowSpan": 12} for i, v in enumerate(visuals)]
    return [{"Configuration": {"GridLayout": {"Elements": elements}}}]


def visual_data_sets(visual: dict) -> set[str]:
    """Data set identifiers a visual's fields refer to."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "DataSetIdentifier" in node and "ColumnName" in node:
                found.add(node["DataSetIdentifier"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
    walk(visual)
    return found


def time_filters(visuals: list[dict], data_sets: Iterable[str], hours: int) -> list[dict]:
    """One filter group per data set: only the last ``hours`` of window_start.

    Keeps every DIRECT_QUERY query to recent windows instead of the whole history.
    """
    groups = []
    for data_set in data_sets:
        visual_ids = [visual_id(v) for v in visuals if data_set in visual_data_sets(v)]
        if not visual_ids:
            continue
        slug = _slug(data_set)
        groups.append({
            "FilterGroupId": f"last-hours-{slug}", "CrossDataset": "SINGLE_DATASET", "Status": "ENABLED",
            "Filters": [{"RelativeDatesFilter": {
                "FilterId": f"last-hours-{slug}-window-start", "Column": _col(data_set, "window_start"),
                "AnchorDateConfiguration": {"AnchorOption": "NOW"}, "TimeGranularity": "HOUR",
                "RelativeDateType": "LAST", "RelativeDateValue": hours, "NullOption": "NON_NULLS_ONLY"}}],
            "ScopeConfiguration": {"SelectedSheets": {"SheetVisualScopingConfigurations": [
                {"SheetId": SHEET_ID, "Scope": "SELECTED_VISUALS", "VisualIds": visual_ids}]}}})
    return groups
