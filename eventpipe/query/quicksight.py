"""QuickSight over Athena: one data source, a data set per metric view, one dashboard.

``eventpipe quicksight setup`` calls :func:`setup`.  Every request body is built
by a pure function (:func:`data_source_request`, :func:`data_set_request`,
:func:`dashboard_request`, :func:`update_request`, :func:`permissions_request`)
so the tests can check each one against the botocore service model; ``setup``
only sends them.

Ids are deterministic (``eventpipe-athena``, ``eventpipe[-<app>]-<view>``,
``eventpipe[-<app>]-dashboard``), so running setup again updates what exists:
create -> ``ResourceExistsException`` -> update (plus a grant of the principal's
permissions, and publishing the new dashboard version).  ``ConflictException``
(another change in progress) is retried a few times, then raised.

The data sets query the Athena views ``<database>.<metric>`` in DIRECT_QUERY
mode, one per metric of ``metrics.yaml``; their columns and the dashboard's
visuals follow the metrics and the measure registry (:mod:`.dashboard`).  With
``app_id`` each data set is a custom SQL query ``... WHERE app_id = '<app>'``
and gets its own ids, so an app's dashboard shows only that app's rows; an app's setup also
makes data sets over its ``sessions`` and ``persons`` tables (:func:`insight_data_set_request`).  That
is a data-set filter, not row-level security: it only isolates apps if the
app's readers are given just these data sets and dashboard (not the
unrestricted ones nor the data source).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping

from botocore.exceptions import ClientError

from chalicelib.apps.keys import APP_ID_RE
from eventpipe.query.quicksight_dashboard import (SHEET_ID, grid, time_filters, view_columns, view_columns_by_name,  # noqa: F401
                                       view_names, visual_data_sets, visuals)

DATA_SOURCE_ID = "eventpipe-athena"
CATALOG = "AwsDataCatalog"

#: Owner permissions, as the QuickSight console grants them.
DATA_SOURCE_ACTIONS = [
    "quicksight:DescribeDataSource", "quicksight:DescribeDataSourcePermissions", "quicksight:PassDataSource",
    "quicksight:UpdateDataSource", "quicksight:DeleteDataSource", "quicksight:UpdateDataSourcePermissions"]
DATA_SET_ACTIONS = [
    "quicksight:DescribeDataSet", "quicksight:DescribeDataSetPermissions", "quicksight:PassDataSet",
    "quicksight:DescribeIngestion", "quicksight:ListIngestions", "quicksight:UpdateDataSet",
    "quicksight:DeleteDataSet", "quicksight:CreateIngestion", "quicksight:CancelIngestion",
    "quicksight:UpdateDataSetPermissions"]
DASHBOARD_ACTIONS = [
    "quicksight:DescribeDashboard", "quicksight:ListDashboardVersions", "quicksight:UpdateDashboardPermissions",
    "quicksight:QueryDashboard", "quicksight:UpdateDashboard", "quicksight:DeleteDashboard",
    "quicksight:DescribeDashboardPermissions", "quicksight:UpdateDashboardPublishedVersion"]

#: Create-request keys that the matching update_* call does not take.
_NOT_UPDATABLE = {
    "data_source": ("Type", "Permissions", "Tags", "FolderArns"),
    "data_set": ("Permissions", "Tags", "FolderArns", "UseAs"),
    "dashboard": ("Permissions", "Tags", "FolderArns", "LinkSharingConfiguration", "LinkEntities"),
}
_ID_KEY = {"data_source": "DataSourceId", "data_set": "DataSetId", "dashboard": "DashboardId"}

class QuickSightSetupError(RuntimeError):
    """A resource ended in a *_FAILED state, or stayed in progress too long."""


# ------------------------------------------------------------------ ids
def _check_app(app_id: str | None) -> None:
    if app_id is not None and not APP_ID_RE.fullmatch(app_id):
        raise ValueError(f"app id {app_id!r} must match ^[a-z0-9][a-z0-9_-]{{0,63}}$")


def data_set_id(view: str, app_id: str | None = None) -> str:
    _check_app(app_id)
    return f"eventpipe-{app_id}-{view}" if app_id else f"eventpipe-{view}"


def dashboard_id(app_id: str | None = None) -> str:
    _check_app(app_id)
    return f"eventpipe-{app_id}-dashboard" if app_id else "eventpipe-dashboard"


def _permissions(principal_arn: str | None, actions: list[str]) -> dict:
    return {"Permissions": [{"Principal": principal_arn, "Actions": list(actions)}]} if principal_arn else {}


# ------------------------------------------------------------- requests
def data_source_request(account_id: str, workgroup: str = "primary", principal_arn: str | None = None,
                        name: str = "eventpipe Athena") -> dict:
    """CreateDataSource: Athena in ``workgroup``."""
    return {"AwsAccountId": account_id, "DataSourceId": DATA_SOURCE_ID, "Name": name, "Type": "ATHENA",
            "DataSourceParameters": {"AthenaParameters": {"WorkGroup": workgroup}},
            **_permissions(principal_arn, DATA_SOURCE_ACTIONS)}


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def data_set_request(account_id: str, view: str, columns: list[dict], data_source_arn: str,
                     database: str = "eventpipe", app_id: str | None = None,
                     principal_arn: str | None = None) -> dict:
    """CreateDataSet over ``<database>.<view>`` (DIRECT_QUERY).

    Without ``app_id`` the physical table is the view itself; with it, a custom
    SQL query that keeps only that app's rows.
    """
    _check_app(app_id)
    table_id = view.replace("_", "-")  # PhysicalTableId allows [0-9a-zA-Z-]
    if app_id is None:
        physical = {"RelationalTable": {"DataSourceArn": data_source_arn, "Catalog": CATALOG, "Schema": database,
                                        "Name": view, "InputColumns": columns}}
        name = f"eventpipe {view}"
    else:
        select = ", ".join(_quote(c["Name"]) for c in columns)
        sql = f"SELECT {select} FROM {_quote(database)}.{_quote(view)} WHERE {_quote('app_id')} = '{app_id}'"
        physical = {"CustomSql": {"DataSourceArn": data_source_arn, "Name": view, "SqlQuery": sql,
                                  "Columns": columns}}
        name = f"eventpipe {app_id} {view}"
    return {"AwsAccountId": account_id, "DataSetId": data_set_id(view, app_id), "Name": name,
            "PhysicalTableMap": {table_id: physical}, "ImportMode": "DIRECT_QUERY",
            **_permissions(principal_arn, DATA_SET_ACTIONS)}


#: QuickSight column types of the insight tables' Hive types (arrays are given as comma-joined text).
_INSIGHT_TYPES = {"string": "STRING", "bigint": "INTEGER", "int": "INTEGER", "double": "DECIMAL",
                  "timestamp": "DATETIME", "boolean": "BOOLEAN"}


def insight_tables() -> dict[str, list[dict]]:
    """``{table: Glue columns}`` of the sessions and persons tables (partitions included)."""
    from chalicelib.lake.glue import insight_table_inputs

    return {t["Name"]: t["StorageDescriptor"]["Columns"] + t["PartitionKeys"] for t in insight_table_inputs("bucket")}


def insight_data_set_request(account_id: str, table: str, data_source_arn: str, database: str, app_id: str,
                             principal_arn: str | None = None) -> dict:
    """CreateDataSet over the ``sessions`` or ``persons`` table of one app (DIRECT_QUERY, custom SQL):
    their ``app_id`` is an injected partition, so every query must name the app."""
    _check_app(app_id)
    columns, select = [], []
    for column in insight_tables()[table]:
        name, hive = column["Name"], column["Type"]
        if hive.startswith("array<"):
            select.append(f"array_join({_quote(name)}, ',') AS {_quote(name)}")
            columns.append({"Name": name, "Type": "STRING"})
        else:
            select.append(_quote(name))
            columns.append({"Name": name, "Type": _INSIGHT_TYPES[hive]})
    sql = f"SELECT {', '.join(select)} FROM {_quote(database)}.{_quote(table)} WHERE {_quote('app_id')} = '{app_id}'"
    return {"AwsAccountId": account_id, "DataSetId": data_set_id(table, app_id), "Name": f"eventpipe {app_id} {table}",
            "PhysicalTableMap": {table: {"CustomSql": {"DataSourceArn": data_source_arn, "Name": table,
                                                       "SqlQuery": sql, "Columns": columns}}},
            "ImportMode": "DIRECT_QUERY", **_permissions(principal_arn, DATA_SET_ACTIONS)}


def dashboard_request(account_id: str, data_set_arns: Mapping[str, str], app_id: str | None = None,
                      principal_arn: str | None = None, hours: int = 24, metrics=None) -> dict:
    """CreateDashboard with a definition: one sheet over the metric views (see :mod:`.dashboard`).

    Args:
        data_set_arns: ``{view: data set ARN}`` for every metric view (:func:`view_names`).
        hours: the sheet shows windows that started in the last ``hours``.
        metrics: a MetricSet (default: ``metrics.yaml``).
    """
    views = view_names(metrics)
    missing = [v for v in views if v not in data_set_arns]
    if missing:
        raise ValueError(f"dashboard needs data sets for {missing}")
    sheet_visuals = visuals(metrics)
    definition = {
        "DataSetIdentifierDeclarations": [{"Identifier": view, "DataSetArn": data_set_arns[view]} for view in views],
        "Sheets": [{"SheetId": SHEET_ID, "Name": "Overview", "Visuals": sheet_visuals,
                    "Layouts": grid(sheet_visuals)}],
        "FilterGroups": time_filters(sheet_visuals, views, hours),
    }
    return {"AwsAccountId": account_id, "DashboardId": dashboard_id(app_id),
            "Name": f"eventpipe ({app_id})" if app_id else "eventpipe",
            "Definition": definition,
            "DashboardPublishOptions": {"AdHocFilteringOption": {"AvailabilityStatus": "ENABLED"},
                                        "ExportToCSVOption": {"AvailabilityStatus": "ENABLED"}},
            **_permissions(principal_arn, DASHBOARD_ACTIONS)}


def update_request(kind: str, create_request: Mapping[str, Any]) -> dict:
    """The update_<kind> body for a create request (``kind``: data_source, data_set, dashboard)."""
    return {k: v for k, v in create_request.items() if k not in _NOT_UPDATABLE[kind]}


def permissions_request(kind: str, create_request: Mapping[str, Any]) -> dict | None:
    """update_<kind>_permissions granting the create request's permissions (None if it has none)."""
    if not create_request.get("Permissions"):
        return None
    id_key = _ID_KEY[kind]
    return {"AwsAccountId": create_request["AwsAccountId"], id_key: create_request[id_key],
            "GrantPermissions": create_request["Permissions"]}


# ---------------------------------------------------------------- calls
def _code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def _call(fn: Callable[..., dict], request: Mapping[str, Any], sleep: Callable[[float], None],
          attempts: int = 5, delay_s: float = 2.0) -> dict:
    """``fn(**request)``, retrying ConflictException (a change in progress)."""
    for attempt in range(attempts):
        try:
            return fn(**request)
        except ClientError as exc:
            if _code(exc) != "ConflictException" or attempt == attempts - 1:
                raise
            sleep(delay_s * (attempt + 1))
    raise AssertionError("unreachable")


def _create_or_update(client, kind: str, request: dict, sleep) -> tuple[dict, bool]:
    """Create, or update when it exists; returns (response, created)."""
    try:
        return _call(getattr(client, f"create_{kind}"), request, sleep), True
    except ClientError as exc:
        if _code(exc) != "ResourceExistsException":
            raise
    response = _call(getattr(client, f"update_{kind}"), update_request(kind, request), sleep)
    grant = permissions_request(kind, request)
    if grant is not None:
        _call(getattr(client, f"update_{kind}_permissions"), grant, sleep)
    return response, False


def _wait(describe: Callable[[], tuple[str, Any]], status: str, what: str, sleep, poll_s: float,
          timeout_s: float) -> str:
    """Poll ``describe() -> (status, errors)`` while the status is *_IN_PROGRESS."""
    deadline = time.monotonic() + timeout_s
    errors = None
    while status.endswith("_IN_PROGRESS"):
        if time.monotonic() > deadline:
            raise QuickSightSetupError(f"{what}: still {status} after {timeout_s:.0f}s")
        sleep(poll_s)
        status, errors = describe()
    if status.endswith("_FAILED"):
        raise QuickSightSetupError(f"{what}: {status}: {errors}")
    return status


def setup(client, account_id: str, *, workgroup: str = "primary", principal_arn: str | None = None,
          app_id: str | None = None, database: str = "eventpipe", metrics=None, hours: int = 24,
          poll_s: float = 2.0, timeout_s: float = 300.0, sleep: Callable[[float], None] = time.sleep) -> list[str]:
    """Create or update the data source, the data sets and the dashboard; returns a report.

    Args:
        client: a boto3 QuickSight client.
        account_id: the 12-digit AWS account id.
        metrics: a MetricSet (default: ``metrics.yaml``), for the views' columns.
    """
    _check_app(app_id)
    report = []

    def verb(created: bool) -> str:
        return "created" if created else "updated"

    # 1. data source
    request = data_source_request(account_id, workgroup, principal_arn)
    response, created = _create_or_update(client, "data_source", request, sleep)
    data_source_arn = response["Arn"]

    def describe_source() -> tuple[str, Any]:
        source = client.describe_data_source(AwsAccountId=account_id, DataSourceId=DATA_SOURCE_ID)["DataSource"]
        return source.get("Status", ""), source.get("ErrorInfo")
    _wait(describe_source, response.get("CreationStatus") or response.get("UpdateStatus") or "",
          f"data source {DATA_SOURCE_ID}", sleep, poll_s, timeout_s)
    report.append(f"data source {DATA_SOURCE_ID} (Athena, workgroup {workgroup}): {verb(created)}")

    # 2. data sets (synchronous for DIRECT_QUERY)
    data_set_arns = {}
    for view, columns in view_columns_by_name(view_names(metrics), metrics).items():
        request = data_set_request(account_id, view, columns, data_source_arn, database, app_id, principal_arn)
        response, created = _create_or_update(client, "data_set", request, sleep)
        data_set_arns[view] = response["Arn"]
        report.append(f"data set {request['DataSetId']} ({database}.{view}): {verb(created)}")

    # 2b. the app's sessions and persons tables (they need an app: app_id is an injected partition)
    for table in insight_tables() if app_id else ():
        request = insight_data_set_request(account_id, table, data_source_arn, database, app_id, principal_arn)
        _, created = _create_or_update(client, "data_set", request, sleep)
        report.append(f"data set {request['DataSetId']} ({database}.{table}): {verb(created)}")

    # 3. dashboard: each create/update makes a version; an update's must be published
    request = dashboard_request(account_id, data_set_arns, app_id, principal_arn, hours, metrics)
    dash_id = request["DashboardId"]
    response, created = _create_or_update(client, "dashboard", request, sleep)
    version = int(response["VersionArn"].rsplit("/", 1)[1])

    def describe_version() -> tuple[str, Any]:
        found = client.describe_dashboard(AwsAccountId=account_id, DashboardId=dash_id,
                                          VersionNumber=version)["Dashboard"]["Version"]
        return found.get("Status", ""), found.get("Errors")
    _wait(describe_version, response.get("CreationStatus", ""), f"dashboard {dash_id} version {version}",
          sleep, poll_s, timeout_s)
    if not created:
        _call(client.update_dashboard_published_version,
              {"AwsAccountId": account_id, "DashboardId": dash_id, "VersionNumber": version}, sleep)
    report.append(f"dashboard {dash_id}: {verb(created)}, version {version} published")
    return report
