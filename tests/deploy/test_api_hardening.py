"""The deployed API (issue 21, items 14 and 15), checked in the expanded template of each stage."""

from __future__ import annotations

import json

import pytest

from chalicelib.runtime.pipeline_config import load_pipeline_config
from eventpipe.deploy import api_stage
from eventpipe.deploy import naming as n
from eventpipe.deploy.package import expand_sam
from tests.deploy.conftest import packaged

API = n.FUNCTIONS["api_handler"]


def _of_type(template: dict, kind: str) -> dict:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def _stage(template: dict) -> dict:
    (stage,) = _of_type(template, "AWS::ApiGateway::Stage").values()
    return stage["Properties"]


def test_stage_throttling_comes_from_the_pipeline_config(stage_template):
    """The API stage throttles every method at the [api] rate and burst of the stage's pipeline.toml."""
    stage, template = stage_template
    api = load_pipeline_config(stage).api
    assert _stage(template)["MethodSettings"] == [{"ResourcePath": "/*", "HttpMethod": "*",
                                                  "ThrottlingRateLimit": api.throttling_rate_limit,
                                                  "ThrottlingBurstLimit": api.throttling_burst_limit}]


def test_dev_and_prod_throttle_differently():
    """Stage overrides apply: dev's rate is its own, below prod's."""
    dev, prod = (load_pipeline_config(s).api for s in ("dev", "prod"))
    assert dev.throttling_rate_limit < prod.throttling_rate_limit


def test_access_logs_go_to_a_log_group_with_retention(stage_template):
    """One JSON line per request (request id, status, latency; no header, so no API key) into the
    access log group, kept as long as the stage's other logs; API Gateway's account logging role
    is set before the API exists."""
    stage, template = stage_template
    resources = template["Resources"]
    setting = _stage(template)["AccessLogSetting"]
    assert setting["DestinationArn"] == {"Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}"
                                                    ":log-group:${ApiAccessLogGroup}"}
    fields = json.loads(setting["Format"])
    assert {"requestId", "status", "responseLatency", "ip"} <= set(fields)
    assert not any("header" in value.lower() or "$input" in value for value in fields.values())
    group = resources["ApiAccessLogGroup"]["Properties"]
    assert group["RetentionInDays"] == load_pipeline_config(stage).lifecycle.log_retention_days
    assert resources["RestAPI"]["DependsOn"] == ["ApiGatewayAccount"]
    assert resources["ApiGatewayAccount"]["Properties"]["CloudWatchRoleArn"] == {"Fn::If": [
        "CreateApiGatewayCloudWatchRole", {"Fn::GetAtt": ["ApiGatewayCloudWatchRole", "Arn"]},
        {"Ref": "ApiGatewayCloudWatchRoleArn"}]}
    role = resources["ApiGatewayCloudWatchRole"]
    assert role["Condition"] == "CreateApiGatewayCloudWatchRole"
    assert "apigateway.amazonaws.com" in json.dumps(role["Properties"]["AssumeRolePolicyDocument"])


def test_web_acl_is_an_optional_parameter_none_by_default(dev_template):
    """A WAF web ACL is associated with the stage only when WebAclArn is given."""
    parameter = dev_template["Parameters"]["WebAclArn"]
    assert parameter["Default"] == ""
    assert dev_template["Conditions"]["HasWebAcl"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "WebAclArn"}, ""]}]}
    association = dev_template["Resources"]["ApiWebAclAssociation"]
    assert association["Condition"] == "HasWebAcl"
    assert association["Properties"]["WebACLArn"] == {"Ref": "WebAclArn"}
    assert association["Properties"]["ResourceArn"] == {
        "Fn::Sub": "arn:${AWS::Partition}:apigateway:${AWS::Region}::/restapis/${RestAPI}/stages/api"}
    assert association["DependsOn"] == ["RestAPIapiStage"] and "RestAPIapiStage" in dev_template["Resources"]


def _api_search_statements(template: dict) -> list[dict]:
    role = template["Resources"][f"{API}Role"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    return [s for s in role if any(a.startswith("es:") for a in s["Action"])]


def test_api_role_may_only_read_the_daily_indices_and_the_cluster_health(stage_template):
    """The API's role: es:ESHttpPost on the daily indices' _search and GET on _cluster/health; no PUT,
    DELETE or HEAD, no POST that writes (``/<index>/_doc``), and nothing on the whole domain."""
    stage, template = stage_template
    statements = _api_search_statements(template)
    actions = {a for s in statements for a in s["Action"]}
    assert actions == {"es:ESHttpGet", "es:ESHttpPost"}
    domain = f"arn:${{AWS::Partition}}:es:${{AWS::Region}}:${{AWS::AccountId}}:domain/eventpipe-{stage}"
    assert {r["Fn::Sub"] for st in statements for r in st["Resource"]} == {f"{domain}/events-*/_search",
                                                                           f"{domain}/_cluster/health"}
    health = next(s for s in statements if any("_cluster/health" in r["Fn::Sub"] for r in s["Resource"]))
    assert health["Action"] == ["es:ESHttpGet"]


def test_domain_policy_grants_the_api_role_no_more_than_its_own_policy(stage_template):
    """Within one account the domain's resource policy alone grants access: its statements for the
    API role are the role's own search statements."""
    _, template = stage_template
    domain = template["Resources"]["SearchDomain"]["Properties"]["AccessPolicies"]["Statement"]
    for_api = [s for s in domain if s["Principal"]["AWS"] == [{"Fn::GetAtt": [f"{API}Role", "Arn"]}]]
    strip = [{k: v for k, v in s.items() if k not in ("Sid", "Principal")} for s in for_api]
    assert strip == [{k: v for k, v in s.items() if k != "Sid"} for s in _api_search_statements(template)]
    writers = {a for s in domain if s not in for_api for a in s["Action"]}
    assert "es:ESHttpPut" in writers  # the indexer still applies the template


def test_kms_key_is_an_optional_parameter_for_tables_and_the_alarm_topic(stage_template):
    """KmsKeyArn (empty by default) encrypts both tables and the alarm topic with the customer's key."""
    _, template = stage_template
    assert template["Parameters"]["KmsKeyArn"]["Default"] == ""
    assert template["Conditions"]["HasKmsKey"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "KmsKeyArn"}, ""]}]}
    for table in (n.APPS_TABLE, n.STATE_TABLE):
        assert template["Resources"][table]["Properties"]["SSESpecification"] == {"Fn::If": [
            "HasKmsKey", {"SSEEnabled": True, "SSEType": "KMS", "KMSMasterKeyId": {"Ref": "KmsKeyArn"}},
            {"Ref": "AWS::NoValue"}]}
    assert template["Resources"][n.ALARM_TOPIC]["Properties"]["KmsMasterKeyId"] == {"Fn::If": [
        "HasKmsKey", {"Ref": "KmsKeyArn"}, {"Ref": "AWS::NoValue"}]}


def test_search_domain_publishes_slow_and_error_logs(stage_template):
    """Search and indexing slow logs and error logs go to log groups with retention; no audit logs
    (they need fine-grained access control); the service may write to exactly those groups."""
    stage, template = stage_template
    resources = template["Resources"]
    domain = resources["SearchDomain"]
    options = domain["Properties"]["LogPublishingOptions"]
    assert set(options) == {"SEARCH_SLOW_LOGS", "INDEX_SLOW_LOGS", "ES_APPLICATION_LOGS"}
    groups = []
    for option in options.values():
        assert option["Enabled"] is True
        group = option["CloudWatchLogsLogGroupArn"]["Fn::GetAtt"][0]
        assert resources[group]["Properties"]["RetentionInDays"] == load_pipeline_config(
            stage).lifecycle.log_retention_days
        groups.append(group)
    policy = resources["SearchLogsResourcePolicy"]["Properties"]["PolicyDocument"]["Fn::Sub"]
    document = json.loads(policy)
    (statement,) = document["Statement"]
    assert statement["Principal"] == {"Service": "es.amazonaws.com"}
    assert sorted(statement["Resource"]) == sorted(f"${{{g}.Arn}}" for g in groups)
    assert "SearchLogsResourcePolicy" in domain["DependsOn"]


def test_api_function_runs_with_snapstart_behind_its_alias(stage_template):
    """SnapStart applies to published versions only: SAM publishes one, the alias points at it, and
    every Lambda integration of the API and API Gateway's invoke permission name the alias."""
    _, template = stage_template
    resources = template["Resources"]
    assert resources[API]["Properties"]["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    assert load_pipeline_config("dev").deploy.runtime == resources[API]["Properties"]["Runtime"] == "python3.12"
    (alias_id, alias), = _of_type(template, "AWS::Lambda::Alias").items()
    assert alias["Properties"]["Name"] == api_stage.ALIAS and alias["Properties"]["FunctionName"] == {"Ref": API}
    version_id = alias["Properties"]["FunctionVersion"]["Fn::GetAtt"][0]
    assert resources[version_id]["Type"] == "AWS::Lambda::Version"
    assert resources[version_id]["DeletionPolicy"] == "Delete"  # no cached snapshot of a replaced version
    body = resources["RestAPI"]["Properties"]["Body"]
    uris = [op["x-amazon-apigateway-integration"]["uri"]["Fn::Sub"] for methods in body["paths"].values()
            for op in methods.values() if op.get("x-amazon-apigateway-integration", {}).get("type") == "aws_proxy"]
    assert len(uris) > 10 and all(f"${{{alias_id}}}" in uri and ".Arn}" not in uri for uri in uris)
    (permission,) = [p for p in _of_type(template, "AWS::Lambda::Permission").values()
                     if p["Properties"]["Principal"] == "apigateway.amazonaws.com"]
    assert permission["Properties"]["FunctionName"] == {"Ref": alias_id}
    others = [k for k, v in _of_type(template, "AWS::Lambda::Function").items() if "SnapStart" in v["Properties"]]
    assert others == [API]


@pytest.mark.parametrize("change", ["artifacts", "memory"])
def test_new_code_or_configuration_publishes_a_new_version(tmp_path_factory, change):
    """The version SAM publishes (and the alias follows) is named after the uploaded zips and the
    function's properties: the same inputs keep it, a new zip or setting replaces it."""

    def version(digest: str, memory: int | None = None) -> tuple[str, str]:
        sam = packaged("dev", tmp_path_factory)
        if memory:
            sam["Resources"][API]["Properties"]["MemorySize"] = memory
        api_stage.pin_version(sam, digest)
        resources = expand_sam(sam)["Resources"]
        (alias,) = _of_type({"Resources": resources}, "AWS::Lambda::Alias").values()
        versions = [k for k, v in resources.items() if v["Type"] == "AWS::Lambda::Version"]
        return versions[0], alias["Properties"]["FunctionVersion"]["Fn::GetAtt"][0]

    before, target = version("zips-1")
    assert target == before and version("zips-1") == (before, before)
    after = version("zips-2")[0] if change == "artifacts" else version("zips-1", memory=2048)[0]
    assert after != before
