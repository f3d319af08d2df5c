"""Offline validation: the expanded template lints clean, and planted faults are caught."""

from __future__ import annotations

from eventpipe.deploy.validate import invariant_findings, lint_findings, wildcard_findings


def _role_statements(template: dict, role: str) -> list:
    return template["Resources"][role]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]


def test_expanded_templates_have_no_cfn_lint_findings(stage_template):
    stage, template = stage_template
    assert [str(f) for f in lint_findings(template)] == [], stage


def test_planted_bad_property_is_caught_by_cfn_lint(dev_template):
    dev_template["Resources"]["EventStream"]["Properties"]["ShardCountt"] = 1
    findings = lint_findings(dev_template)
    assert any(f.check == "cfn-lint E3002" and "ShardCountt" in f.message for f in findings), findings


def test_no_policy_has_a_wildcard_action_resource_or_principal(stage_template):
    stage, template = stage_template
    assert [str(f) for f in wildcard_findings(template)] == [], stage


def test_planted_wildcard_action_is_caught(dev_template):
    _role_statements(dev_template, "ArchiveEventsRole").append(
        {"Sid": "Planted", "Effect": "Allow", "Action": "*", "Resource": {"Fn::GetAtt": ["EventStream", "Arn"]}})
    messages = [f.message for f in wildcard_findings(dev_template)]
    assert messages == ["statement 'Planted' allows action '*'"]


def test_planted_service_wildcard_and_star_resource_are_caught(dev_template):
    _role_statements(dev_template, "IndexEventsRole").append(
        {"Sid": "Planted", "Effect": "Allow", "Action": ["s3:Get*"], "Resource": "*"})
    messages = sorted(f.message for f in wildcard_findings(dev_template))
    assert len(messages) == 2
    assert "allows action 's3:Get*'" in messages[0] and "allows resource '*'" in messages[1]


def test_deny_statements_may_use_wildcards(dev_template):
    bucket_policy = dev_template["Resources"]["LakeBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert bucket_policy[0]["Effect"] == "Deny" and bucket_policy[0]["Action"] == "s3:*"
    assert wildcard_findings(dev_template) == []


def test_pipeline_invariants_hold_for_every_stage(stage_template):
    stage, template = stage_template
    assert [str(f) for f in invariant_findings(template)] == [], stage


def test_invariant_check_catches_a_mapping_without_batch_item_failures(dev_template):
    mapping = dev_template["Resources"]["IndexEventsIndexEventsKinesisEventSource"]["Properties"]
    del mapping["FunctionResponseTypes"]
    del mapping["DestinationConfig"]
    messages = [f.message for f in invariant_findings(dev_template)]
    assert messages == ["no FunctionResponseTypes [ReportBatchItemFailures]", "no DestinationConfig"]


def test_invariant_check_catches_an_api_without_reserved_concurrency(dev_template):
    """The API function must have a concurrency ceiling, or a flood of API requests takes the consumers' share."""
    del dev_template["Resources"]["APIHandler"]["Properties"]["ReservedConcurrentExecutions"]
    messages = [f.message for f in invariant_findings(dev_template)]
    assert messages == ["no reserved concurrency: a flood of API requests could starve the consumers"]


def test_invariant_check_catches_too_much_reserved_concurrency(dev_template):
    for name in ("APIHandler", "ArchiveEvents", "AggregateEvents", "IndexEvents", "SearchRetention"):
        dev_template["Resources"][name]["Properties"]["ReservedConcurrentExecutions"] = 200  # the old prod setting
    messages = [f.message for f in invariant_findings(dev_template)]
    # 5 x 200 + the planner's, the committer's and the deletion job's 1 each + the finalize workers' (pipeline.toml)
    workers = dev_template["Resources"]["FinalizeWorker"]["Properties"]["ReservedConcurrentExecutions"]
    assert messages == [f"reserves {1003 + workers} concurrent executions; a default account can grant 900"]


def test_api_check_catches_an_integration_of_latest_and_an_unthrottled_stage(dev_template):
    """An integration that invokes $LATEST bypasses SnapStart; a stage without throttling or access
    logs is the state before issue 21: both are findings."""
    resources = dev_template["Resources"]
    integration = resources["RestAPI"]["Properties"]["Body"]["paths"]["/v1/events"]["post"][
        "x-amazon-apigateway-integration"]
    integration["uri"] = {"Fn::Sub": integration["uri"]["Fn::Sub"].replace("${APIHandlerAliaslive}",
                                                                           "${APIHandler.Arn}")}
    stage = resources["RestAPIapiStage"]["Properties"]
    del stage["MethodSettings"], stage["AccessLogSetting"]
    del resources["APIHandler"]["Properties"]["SnapStart"]
    messages = [f.message for f in invariant_findings(dev_template)]
    assert messages[0] == "no SnapStart on published versions"
    assert messages[1].startswith("an integration does not invoke the alias")
    assert messages[2:] == ["no stage-wide throttling (MethodSettings /* *)", "no access log with $context.requestId"]
