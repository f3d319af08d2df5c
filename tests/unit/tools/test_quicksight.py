"""QuickSight setup: every request checked against the botocore model, the calls moto has run on moto.

moto (5.2.5) implements create/describe/list/update of data sources, create_data_set and
create/describe/list of dashboards; there every create overwrites silently (no
ResourceExistsException), so the update path (update_data_set, update_dashboard,
publishing, permissions: 404 or NotImplemented in moto) is tested with botocore's Stubber.
"""

from __future__ import annotations

import copy
import re

import boto3
import pytest
from botocore.exceptions import ParamValidationError
from botocore.stub import Stubber
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID

from eventpipe.query import quicksight as qs

ACCOUNT = DEFAULT_ACCOUNT_ID  # 123456789012
REGION = "us-east-1"
PRINCIPAL = f"arn:aws:quicksight:{REGION}:{ACCOUNT}:user/default/analyst"
SOURCE_ARN = f"arn:aws:quicksight:{REGION}:{ACCOUNT}:datasource/{qs.DATA_SOURCE_ID}"
COLUMNS = qs.view_columns_by_name()
VIEWS = qs.view_names()


def set_arn(view: str, app_id: str | None = None) -> str:
    return f"arn:aws:quicksight:{REGION}:{ACCOUNT}:dataset/{qs.data_set_id(view, app_id)}"


def set_arns(app_id: str | None = None) -> dict[str, str]:
    return {view: set_arn(view, app_id) for view in VIEWS}


def all_requests() -> list[tuple[str, str, dict]]:
    """(label, operation, request) for every body setup() can send."""
    out = []
    for principal in (None, PRINCIPAL):
        tag = "principal" if principal else "no-principal"
        source = qs.data_source_request(ACCOUNT, "primary", principal)
        out.append((f"data_source/{tag}", "create_data_source", source))
        out.append((f"data_source/{tag}", "update_data_source", qs.update_request("data_source", source)))
        for app_id in (None, "demo"):
            for view in VIEWS:
                ds = qs.data_set_request(ACCOUNT, view, COLUMNS[view], SOURCE_ARN, "eventpipe", app_id, principal)
                out.append((f"{view}/{app_id}/{tag}", "create_data_set", ds))
                out.append((f"{view}/{app_id}/{tag}", "update_data_set", qs.update_request("data_set", ds)))
            for table in qs.insight_tables() if app_id else ():
                ds = qs.insight_data_set_request(ACCOUNT, table, SOURCE_ARN, "eventpipe", app_id, principal)
                out.append((f"{table}/{app_id}/{tag}", "create_data_set", ds))
                out.append((f"{table}/{app_id}/{tag}", "update_data_set", qs.update_request("data_set", ds)))
            dash = qs.dashboard_request(ACCOUNT, set_arns(app_id), app_id, principal)
            out.append((f"dashboard/{app_id}/{tag}", "create_dashboard", dash))
            out.append((f"dashboard/{app_id}/{tag}", "update_dashboard", qs.update_request("dashboard", dash)))
        if principal:
            out.append(("grant", "update_data_source_permissions", qs.permissions_request("data_source", source)))
            out.append(("grant", "update_data_set_permissions", qs.permissions_request("data_set", ds)))
            out.append(("grant", "update_dashboard_permissions", qs.permissions_request("dashboard", dash)))
    out.append(("publish", "update_dashboard_published_version",
                {"AwsAccountId": ACCOUNT, "DashboardId": qs.dashboard_id(), "VersionNumber": 2}))
    return out


REQUESTS = all_requests()


@pytest.fixture(scope="module")
def client():
    return boto3.client("quicksight", region_name=REGION)


# ---------------------------------------------------- botocore model checks
def model_problems(shape, value, path: str = "") -> list[str]:
    """What botocore's validator does not check: enums, max lengths/values, patterns, one-of unions."""
    md, problems = shape.metadata, []
    if shape.type_name == "structure":
        if shape.name in ONE_OF and len(value) != 1:
            problems.append(f"{path}: {shape.name} needs exactly one member, got {sorted(value)}")
        for key, item in value.items():
            problems += model_problems(shape.members[key], item, f"{path}.{key}")
    elif shape.type_name == "list":
        if "max" in md and len(value) > md["max"]:
            problems.append(f"{path}: {len(value)} items > max {md['max']}")
        for i, item in enumerate(value):
            problems += model_problems(shape.member, item, f"{path}[{i}]")
    elif shape.type_name == "map":
        if "max" in md and len(value) > md["max"]:
            problems.append(f"{path}: {len(value)} entries > max {md['max']}")
        for key, item in value.items():
            problems += model_problems(shape.key, key, f"{path}<key>")
            problems += model_problems(shape.value, item, f"{path}.{key}")
    elif shape.type_name == "string":
        if shape.enum and value not in shape.enum:
            problems.append(f"{path}: {value!r} not in {shape.name} {shape.enum}")
        if "max" in md and len(value) > md["max"]:
            problems.append(f"{path}: length {len(value)} > max {md['max']}")
        if "pattern" in md and not re.fullmatch(md["pattern"], value):
            problems.append(f"{path}: {value!r} does not match {shape.name} pattern {md['pattern']!r}")
    elif shape.type_name in ("integer", "long") and "max" in md and value > md["max"]:
        problems.append(f"{path}: {value} > max {md['max']}")
    return problems


ONE_OF = {"Visual", "DimensionField", "MeasureField", "Filter", "PhysicalTable", "LayoutConfiguration",
          "FieldSortOptions", "NumericalAggregationFunction", "LineChartFieldWells", "BarChartFieldWells",
          "HeatMapFieldWells", "TableFieldWells", "DataSourceParameters"}


@pytest.mark.parametrize("label, operation, request_", REQUESTS, ids=[f"{op}:{lbl}" for lbl, op, _ in REQUESTS])
def test_request_passes_botocore_validation(client, label, operation, request_):
    with Stubber(client) as stubber:
        stubber.add_response(operation, {}, expected_params=request_)
        getattr(client, operation)(**copy.deepcopy(request_))  # raises ParamValidationError if malformed
        stubber.assert_no_pending_responses()
    input_shape = client.meta.service_model.operation_model(
        client.meta.method_to_api_mapping[operation]).input_shape
    assert model_problems(input_shape, request_) == []


def test_malformed_requests_fail_validation(client):
    good = qs.data_set_request(ACCOUNT, "event_counts", COLUMNS["event_counts"], SOURCE_ARN)
    missing = {k: v for k, v in good.items() if k != "ImportMode"}
    empty_permissions = {**good, "Permissions": []}
    bad_column = copy.deepcopy(good)
    del bad_column["PhysicalTableMap"]["event-counts"]["RelationalTable"]["InputColumns"][0]["Type"]
    misspelled = {**qs.dashboard_request(ACCOUNT, set_arns())}
    misspelled["Defintion"] = misspelled.pop("Definition")
    cases = [(missing, "create_data_set", "Missing required parameter in input: \"ImportMode\""),
             (empty_permissions, "create_data_set", "Invalid length for parameter Permissions"),
             (bad_column, "create_data_set", "Missing required parameter in PhysicalTableMap.event-counts"),
             (misspelled, "create_dashboard", "Unknown parameter in input: \"Defintion\"")]
    for request_, operation, message in cases:
        with Stubber(client) as stubber:
            stubber.add_response(operation, {}, expected_params=request_)
            with pytest.raises(ParamValidationError) as caught:
                getattr(client, operation)(**request_)
        assert message in str(caught.value)


def test_model_check_catches_what_botocore_lets_through(client):
    shape = client.meta.service_model.operation_model("CreateDashboard").input_shape
    request_ = qs.dashboard_request(ACCOUNT, set_arns())
    measure = request_["Definition"]["Sheets"][0]["Visuals"][0]["LineChartVisual"]["ChartConfiguration"][
        "FieldWells"]["LineChartAggregatedFieldWells"]["Values"][0]["NumericalMeasureField"]
    measure["AggregationFunction"]["SimpleNumericalAggregation"] = "Sum"  # enum is SUM
    request_["Definition"]["Sheets"][0]["SheetId"] = "over view"  # pattern [\w\-]+
    with Stubber(client) as stubber:  # botocore accepts both
        stubber.add_response("create_dashboard", {}, expected_params=request_)
        client.create_dashboard(**request_)
    problems = model_problems(shape, request_)
    assert len(problems) == 2
    assert any("'Sum' not in SimpleNumericalAggregationFunction" in p for p in problems)
    assert any("'over view' does not match ShortRestrictiveResourceId pattern" in p for p in problems)
    ds_shape = client.meta.service_model.operation_model("CreateDataSet").input_shape
    ds = qs.data_set_request(ACCOUNT, "event_counts", COLUMNS["event_counts"], SOURCE_ARN)
    ds["PhysicalTableMap"] = {"event_counts": ds["PhysicalTableMap"]["event-counts"]}
    assert "does not match PhysicalTableId pattern" in model_problems(ds_shape, ds)[0]


# ------------------------------------------------------------- pure builders
def test_there_is_one_data_set_per_metric_of_metrics_yaml():
    from chalicelib.processing import load_metrics, parse_metrics
    assert VIEWS == load_metrics().names and set(COLUMNS) == set(VIEWS)
    custom = parse_metrics({"metrics": [{"name": "spend", "key": ["attributes.sku"], "window": {"tumbling": "1h"},
                                         "measures": {"p95": "percentile(attributes.price, 95)"}}]})
    assert qs.view_names(custom) == ("spend",)
    assert qs.view_columns_by_name(metrics=custom)["spend"][3:] == [
        {"Name": "sku", "Type": "STRING"}, {"Name": "p95", "Type": "DECIMAL"},
        {"Name": "late_count", "Type": "INTEGER"}]
    (line, bar) = qs.visuals(custom)
    assert next(iter(line)) == "LineChartVisual" and next(iter(bar)) == "BarChartVisual"
    assert bar["BarChartVisual"]["ChartConfiguration"]["FieldWells"]["BarChartAggregatedFieldWells"]["Values"][0][
        "NumericalMeasureField"]["AggregationFunction"] == {"SimpleNumericalAggregation": "MAX"}


def test_view_columns_follow_metrics_yaml():
    types = {view: {c["Name"]: c["Type"] for c in cols} for view, cols in COLUMNS.items()}
    base = {"app_id": "STRING", "window_start": "DATETIME", "window_end": "DATETIME"}
    assert types["event_counts"] == {**base, "event_type": "STRING", "count": "INTEGER", "users": "INTEGER",
                                     "late_count": "INTEGER"}
    assert types["class_activity"] == {**base, "character_class": "STRING", "count": "INTEGER",
                                       "value_sum": "DECIMAL", "value_min": "DECIMAL", "value_max": "DECIMAL",
                                       "value_avg": "DECIMAL", "users": "INTEGER", "late_count": "INTEGER"}
    assert types["region_activity"] == {**base, "geohash5": "STRING", "count": "INTEGER", "users": "INTEGER",
                                        "late_count": "INTEGER"}
    assert types["active_users_5m"] == {**base, "users": "INTEGER", "late_count": "INTEGER"}
    assert types["match_duration"] == {**base, "character_class": "STRING", "count": "INTEGER",
                                       "duration_p50": "DECIMAL", "duration_p90": "DECIMAL",
                                       "duration_p99": "DECIMAL", "late_count": "INTEGER"}


def test_data_set_over_the_view_or_restricted_to_one_app():
    plain = qs.data_set_request(ACCOUNT, "region_activity", COLUMNS["region_activity"], SOURCE_ARN, "lakedb")
    assert plain["DataSetId"] == "eventpipe-region_activity" and plain["ImportMode"] == "DIRECT_QUERY"
    assert plain["PhysicalTableMap"] == {"region-activity": {"RelationalTable": {
        "DataSourceArn": SOURCE_ARN, "Catalog": "AwsDataCatalog", "Schema": "lakedb", "Name": "region_activity",
        "InputColumns": COLUMNS["region_activity"]}}}
    assert "Permissions" not in plain

    app = qs.data_set_request(ACCOUNT, "region_activity", COLUMNS["region_activity"], SOURCE_ARN, "lakedb",
                              app_id="demo-1", principal_arn=PRINCIPAL)
    assert app["DataSetId"] == "eventpipe-demo-1-region_activity"
    sql = app["PhysicalTableMap"]["region-activity"]["CustomSql"]
    assert sql["SqlQuery"] == ('SELECT "app_id", "window_start", "window_end", "geohash5", "count", "users", '
                               '"late_count" FROM "lakedb"."region_activity" WHERE "app_id" = \'demo-1\'')
    assert sql["Columns"] == COLUMNS["region_activity"]
    assert app["Permissions"] == [{"Principal": PRINCIPAL, "Actions": qs.DATA_SET_ACTIONS}]
    with pytest.raises(ValueError, match="must match"):
        qs.data_set_request(ACCOUNT, "region_activity", COLUMNS["region_activity"], SOURCE_ARN,
                            app_id="x' OR '1'='1")


def test_an_apps_sessions_and_persons_data_sets_name_the_app_and_the_table_columns():
    """Rule: the insight data sets read one app's rows of the Glue tables (app_id is an injected
    partition there), with every column of the table (arrays as comma-joined text)."""
    sessions = qs.insight_data_set_request(ACCOUNT, "sessions", SOURCE_ARN, "eventpipe", "demo")
    sql = sessions["PhysicalTableMap"]["sessions"]["CustomSql"]
    assert sql["SqlQuery"].endswith('FROM "eventpipe"."sessions" WHERE "app_id" = \'demo\'')
    assert [c["Name"] for c in sql["Columns"]] == ["session_id", "user_id", "session_start", "session_end",
                                                    "duration_ms", "events", "entry_event_type", "exit_event_type",
                                                    "app_id", "dt"]
    assert {c["Name"]: c["Type"] for c in sql["Columns"]}["session_start"] == "DATETIME"
    persons = qs.insight_data_set_request(ACCOUNT, "persons", SOURCE_ARN, "eventpipe", "demo")["PhysicalTableMap"]
    assert "array_join(\"aliases\", ',') AS \"aliases\"" in persons["persons"]["CustomSql"]["SqlQuery"]
    with pytest.raises(ValueError):
        qs.insight_data_set_request(ACCOUNT, "sessions", SOURCE_ARN, "eventpipe", "x' OR '1'='1")


def test_data_source_request():
    assert qs.data_source_request(ACCOUNT, "analytics") == {
        "AwsAccountId": ACCOUNT, "DataSourceId": "eventpipe-athena", "Name": "eventpipe Athena", "Type": "ATHENA",
        "DataSourceParameters": {"AthenaParameters": {"WorkGroup": "analytics"}}}
    update = qs.update_request("data_source", qs.data_source_request(ACCOUNT, principal_arn=PRINCIPAL))
    assert "Type" not in update and "Permissions" not in update


def _fields(node, found):
    """(kind, FieldId, Column) of every field in a visual."""
    if isinstance(node, dict):
        for kind in ("DateDimensionField", "CategoricalDimensionField", "NumericalMeasureField"):
            if kind in node:
                found.append((kind, node[kind]["FieldId"], node[kind]["Column"]))
        for value in node.values():
            _fields(value, found)
    elif isinstance(node, list):
        for value in node:
            _fields(value, found)
    return found


def test_dashboard_definition_is_consistent_with_the_data_sets():
    request_ = qs.dashboard_request(ACCOUNT, set_arns("demo"), "demo", hours=6)
    assert request_["DashboardId"] == "eventpipe-demo-dashboard"
    definition = request_["Definition"]
    declared = {d["Identifier"]: d["DataSetArn"] for d in definition["DataSetIdentifierDeclarations"]}
    assert declared == set_arns("demo")
    sheet = definition["Sheets"][0]
    visuals = {next(iter(v)): next(iter(v.values())) for v in sheet["Visuals"]}
    assert set(visuals) == {"LineChartVisual", "BarChartVisual", "HeatMapVisual", "TableVisual"}
    # every metric has a visual, chosen by its shape (metrics.yaml), none named in the code
    visual_ids = [next(iter(v.values()))["VisualId"] for v in sheet["Visuals"]]
    assert visual_ids == ["event-counts-over-time", "class-activity-over-time", "class-activity-by-key",
                          "region-activity-heat-map", "region-activity-table", "active-users-5m-over-time",
                          "match-duration-over-time", "match-duration-by-key"]
    wanted_type = {"DateDimensionField": {"DATETIME"}, "CategoricalDimensionField": {"STRING"},
                   "NumericalMeasureField": {"INTEGER", "DECIMAL"}}
    for visual in sheet["Visuals"]:
        body = next(iter(visual.values()))
        fields = _fields(body, [])
        ids = {f[1] for f in fields}
        for kind, _, column in fields:
            types = {c["Name"]: c["Type"] for c in COLUMNS[column["DataSetIdentifier"]]}
            assert types.get(column["ColumnName"]) in wanted_type[kind], (body["VisualId"], column)
        sorts = body["ChartConfiguration"].get("SortConfiguration", {})
        for sort_list in sorts.values():
            if isinstance(sort_list, list):
                assert {s["FieldSort"]["FieldId"] for s in sort_list} <= ids
        for option in body["ChartConfiguration"].get("FieldOptions", {}).get("SelectedFieldOptions", []):
            assert option["FieldId"] in ids
    field_ids = [f[1] for v in sheet["Visuals"] for f in _fields(v, [])]
    # a field id may appear twice in one visual (well + sort) but never in two visuals
    per_visual = [{f[1] for f in _fields(v, [])} for v in sheet["Visuals"]]
    assert sum(len(s) for s in per_visual) == len(set(field_ids))
    assert [e["ElementId"] for e in sheet["Layouts"][0]["Configuration"]["GridLayout"]["Elements"]] == visual_ids
    # the events-per-minute line: count by minute, colored by event type
    line = sheet["Visuals"][0]["LineChartVisual"]["ChartConfiguration"]["FieldWells"]["LineChartAggregatedFieldWells"]
    assert line["Category"][0]["DateDimensionField"]["Column"]["ColumnName"] == "window_start"
    assert line["Category"][0]["DateDimensionField"]["DateGranularity"] == "MINUTE"
    assert line["Colors"][0]["CategoricalDimensionField"]["Column"]["ColumnName"] == "event_type"
    # the active users line is drawn at window_end (hopping window: "the last 5 minutes" then)
    active = sheet["Visuals"][5]["LineChartVisual"]["ChartConfiguration"]["FieldWells"][
        "LineChartAggregatedFieldWells"]
    assert active["Category"][0]["DateDimensionField"]["Column"]["ColumnName"] == "window_end"
    # percentiles per class: value measures only, each combined by its kind's aggregation (MAX: they do not add up)
    bar = sheet["Visuals"][7]["BarChartVisual"]["ChartConfiguration"]["FieldWells"]["BarChartAggregatedFieldWells"]
    assert [(v["NumericalMeasureField"]["Column"]["ColumnName"],
             v["NumericalMeasureField"]["AggregationFunction"]["SimpleNumericalAggregation"]) for v in bar["Values"]] \
        == [("duration_p50", "MAX"), ("duration_p90", "MAX"), ("duration_p99", "MAX")]
    # time filters: one per data set, scoped to the visuals that use it
    for group in definition["FilterGroups"]:
        relative = group["Filters"][0]["RelativeDatesFilter"]
        assert relative["RelativeDateValue"] == 6
        data_set = relative["Column"]["DataSetIdentifier"]
        scoped = group["ScopeConfiguration"]["SelectedSheets"]["SheetVisualScopingConfigurations"][0]["VisualIds"]
        assert scoped and all(data_set in qs.visual_data_sets(sheet["Visuals"][visual_ids.index(v)]) for v in scoped)
    assert {g["Filters"][0]["RelativeDatesFilter"]["Column"]["DataSetIdentifier"]
            for g in definition["FilterGroups"]} == set(VIEWS)
    with pytest.raises(ValueError, match="active_users_5m"):
        qs.dashboard_request(ACCOUNT, {v: a for v, a in set_arns().items() if v != "active_users_5m"})


# ------------------------------------------------------ setup: update path
def _exists(stubber, operation, request_):
    stubber.add_client_error(operation, "ResourceExistsException", "exists", 409, expected_params=request_)


def test_setup_updates_existing_resources_grants_and_publishes(client):
    """Second run on real AWS: every create answers ResourceExistsException."""
    sleeps = []
    source = qs.data_source_request(ACCOUNT, "wg", PRINCIPAL)
    with Stubber(client) as stubber:
        _exists(stubber, "create_data_source", source)
        stubber.add_response("update_data_source", {"Arn": SOURCE_ARN, "UpdateStatus": "UPDATE_IN_PROGRESS"},
                             qs.update_request("data_source", source))
        stubber.add_response("update_data_source_permissions", {}, qs.permissions_request("data_source", source))
        stubber.add_response("describe_data_source", {"DataSource": {"Status": "UPDATE_SUCCESSFUL"}},
                             {"AwsAccountId": ACCOUNT, "DataSourceId": qs.DATA_SOURCE_ID})
        for view in VIEWS:
            ds = qs.data_set_request(ACCOUNT, view, COLUMNS[view], SOURCE_ARN, "eventpipe", "demo", PRINCIPAL)
            _exists(stubber, "create_data_set", ds)
            stubber.add_response("update_data_set", {"Arn": set_arn(view, "demo")}, qs.update_request("data_set", ds))
            stubber.add_response("update_data_set_permissions", {}, qs.permissions_request("data_set", ds))
        for table in ("sessions", "persons"):
            ds = qs.insight_data_set_request(ACCOUNT, table, SOURCE_ARN, "eventpipe", "demo", PRINCIPAL)
            _exists(stubber, "create_data_set", ds)
            stubber.add_response("update_data_set", {"Arn": set_arn(table, "demo")}, qs.update_request("data_set", ds))
            stubber.add_response("update_data_set_permissions", {}, qs.permissions_request("data_set", ds))
        dash = qs.dashboard_request(ACCOUNT, set_arns("demo"), "demo", PRINCIPAL)
        version_arn = f"arn:aws:quicksight:{REGION}:{ACCOUNT}:dashboard/eventpipe-demo-dashboard/version/7"
        _exists(stubber, "create_dashboard", dash)
        stubber.add_response("update_dashboard", {"VersionArn": version_arn, "CreationStatus": "CREATION_IN_PROGRESS"},
                             qs.update_request("dashboard", dash))
        stubber.add_response("update_dashboard_permissions", {}, qs.permissions_request("dashboard", dash))
        stubber.add_response("describe_dashboard", {"Dashboard": {"Version": {"Status": "CREATION_SUCCESSFUL"}}},
                             {"AwsAccountId": ACCOUNT, "DashboardId": "eventpipe-demo-dashboard", "VersionNumber": 7})
        stubber.add_response("update_dashboard_published_version", {},
                             {"AwsAccountId": ACCOUNT, "DashboardId": "eventpipe-demo-dashboard", "VersionNumber": 7})
        report = qs.setup(client, ACCOUNT, workgroup="wg", principal_arn=PRINCIPAL, app_id="demo",
                          sleep=sleeps.append, poll_s=0.5)
        stubber.assert_no_pending_responses()
    assert report[0] == "data source eventpipe-athena (Athena, workgroup wg): updated"
    assert report[-1] == "dashboard eventpipe-demo-dashboard: updated, version 7 published"
    assert sleeps == [0.5, 0.5]


def test_conflict_is_retried_and_a_failed_dashboard_version_raises(client):
    sleeps = []
    source = qs.data_source_request(ACCOUNT)
    with Stubber(client) as stubber:
        stubber.add_client_error("create_data_source", "ConflictException", "busy", 409, expected_params=source)
        stubber.add_response("create_data_source", {"Arn": SOURCE_ARN, "CreationStatus": "CREATION_SUCCESSFUL"},
                             source)
        for view in VIEWS:
            stubber.add_response("create_data_set", {"Arn": set_arn(view)},
                                 qs.data_set_request(ACCOUNT, view, COLUMNS[view], SOURCE_ARN))
        stubber.add_response("create_dashboard", {
            "VersionArn": f"arn:aws:quicksight:{REGION}:{ACCOUNT}:dashboard/eventpipe-dashboard/version/1",
            "CreationStatus": "CREATION_IN_PROGRESS"}, qs.dashboard_request(ACCOUNT, set_arns()))
        stubber.add_response("describe_dashboard", {"Dashboard": {"Version": {
            "Status": "CREATION_FAILED",
            "Errors": [{"Type": "COLUMN_TYPE_MISMATCH", "Message": "window_start is not a date"}]}}})
        with pytest.raises(qs.QuickSightSetupError, match="CREATION_FAILED.*window_start is not a date"):
            qs.setup(client, ACCOUNT, sleep=sleeps.append, poll_s=0)
        stubber.assert_no_pending_responses()
    assert sleeps == [2.0, 0]


# ---------------------------------------------------------------- on moto
def test_setup_twice_on_moto():
    from moto.quicksight.models import quicksight_backends
    with mock_aws():
        client = boto3.client("quicksight", region_name=REGION)
        first = qs.setup(client, ACCOUNT, workgroup="primary", sleep=pytest.fail)
        second = qs.setup(client, ACCOUNT, workgroup="primary", sleep=pytest.fail)
        # moto's create_* overwrite silently, so both runs take the create path
        assert first == second and len(first) == 1 + len(VIEWS) + 1
        source = client.describe_data_source(AwsAccountId=ACCOUNT, DataSourceId="eventpipe-athena")["DataSource"]
        assert source["Type"] == "ATHENA" and source["Status"] == "CREATION_SUCCESSFUL"
        assert source["DataSourceParameters"] == {"AthenaParameters": {"WorkGroup": "primary"}}
        assert len(client.list_data_sources(AwsAccountId=ACCOUNT)["DataSources"]) == 1
        dashboards = client.list_dashboards(AwsAccountId=ACCOUNT)["DashboardSummaryList"]
        assert [d["DashboardId"] for d in dashboards] == ["eventpipe-dashboard"]
        dashboard = client.describe_dashboard(AwsAccountId=ACCOUNT, DashboardId="eventpipe-dashboard")["Dashboard"]
        assert dashboard["Version"]["Status"] == "CREATION_SUCCESSFUL"

        qs.setup(client, ACCOUNT, app_id="demo", principal_arn=PRINCIPAL, sleep=pytest.fail)
        backend = quicksight_backends[ACCOUNT][REGION]
        assert sorted(backend.data_sets) == sorted([qs.data_set_id(v) for v in VIEWS]
                                                   + [qs.data_set_id(v, "demo") for v in VIEWS]
                                                   + [qs.data_set_id(t, "demo") for t in ("sessions", "persons")])
        # the definition went over the wire (REST/JSON) and came back unchanged
        stored = backend.dashboards["eventpipe-demo-dashboard"]
        arns = {v: backend.data_sets[qs.data_set_id(v, "demo")].arn for v in VIEWS}
        assert stored.definition == qs.dashboard_request(ACCOUNT, arns, "demo")["Definition"]
        assert stored.permissions == [{"Principal": PRINCIPAL, "Actions": qs.DASHBOARD_ACTIONS}]


def test_cli_quicksight_setup_on_moto(capsys):
    from eventpipe.cli import build_parser, main
    args = build_parser().parse_args(["quicksight", "setup", "--principal-arn", PRINCIPAL, "--workgroup", "wg",
                                      "--app-id", "demo", "--aws-account-id", ACCOUNT])
    assert (args.principal_arn, args.workgroup, args.app_id, args.aws_account_id) == (PRINCIPAL, "wg", "demo", ACCOUNT)
    with mock_aws():
        assert main(["--aws", "quicksight", "setup", "--app-id", "demo"]) == 0  # account from STS
        client = boto3.client("quicksight", region_name=REGION)
        assert client.describe_dashboard(AwsAccountId=ACCOUNT, DashboardId="eventpipe-demo-dashboard")
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "data source eventpipe-athena (Athena, workgroup primary): created"
    assert out[-1] == "dashboard eventpipe-demo-dashboard: created, version 1 published"
