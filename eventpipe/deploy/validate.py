"""Offline checks of the expanded (plain CloudFormation) template.

* :func:`lint_findings`: cfn-lint on the template (cfn-lint does not look inside
  ``AWS::Serverless::*`` resources, so expand SAM first: :func:`eventpipe.deploy.package.expand_sam`);
* :func:`wildcard_findings`: no ``*`` (or ``service:Prefix*``) action in any Allow statement of
  any IAM or resource policy, and no ``*`` resource unless listed in
  :data:`ALLOWED_STAR_RESOURCES` with the reason AWS requires it (cfn-lint checks neither);
* :func:`invariant_findings`: the pipeline's own rules (every mapping reports batch item
  failures and has bisection, retries, record age and an on-failure destination; every
  function has its own role; reserved concurrency fits a default account; ...).

CLI (for CI): ``python -m eventpipe.deploy.validate --stage dev``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from eventpipe.deploy import naming as n

#: Statement Sid -> why AWS needs ``"Resource": "*"`` there.
ALLOWED_STAR_RESOURCES: dict[str, str] = {
    "PipelineMetrics": "cloudwatch:GetMetricData has no resource-level permissions (the Service Authorization "
                       "Reference lists no resource type for it); read-only, for GET /v1/pipeline",
}
#: A default account: 1,000 concurrent executions, of which 100 must stay unreserved.
ACCOUNT_CONCURRENCY = 1000
UNRESERVED_MINIMUM = 100
REQUIRED_MAPPING_KEYS = ("BisectBatchOnFunctionError", "MaximumRetryAttempts", "MaximumRecordAgeInSeconds",
                         "ParallelizationFactor", "MaximumBatchingWindowInSeconds", "DestinationConfig")
PLACEHOLDER_ROLE = "replaced-per-function-by-the-merge-template"


@dataclass(frozen=True)
class Finding:
    check: str
    resource: str
    message: str

    def __str__(self) -> str:
        return f"[{self.check}] {self.resource}: {self.message}"


def lint_findings(template: dict, regions: tuple[str, ...] = ("us-east-1",)) -> list[Finding]:
    """cfn-lint's errors (rules E*) and warnings (W*) for the template."""
    from cfnlint.api import ManualArgs, lint

    matches = lint(json.dumps(template), config=ManualArgs(regions=list(regions)))
    findings = []
    for match in matches:
        path = getattr(match, "path", None) or []
        where = "/".join(str(p) for p in path[:2]) if path else "template"
        findings.append(Finding(f"cfn-lint {match.rule.id}", where, match.message))
    return findings


def _statements(document) -> Iterator[dict]:
    if not isinstance(document, dict):
        return
    statements = document.get("Statement", [])
    for statement in statements if isinstance(statements, list) else [statements]:
        if isinstance(statement, dict):
            yield statement


def policy_documents(template: dict) -> Iterator[tuple[str, dict]]:
    """(resource logical id, policy document) for every identity and resource policy."""
    for logical_id, resource in template.get("Resources", {}).items():
        kind, props = resource.get("Type", ""), resource.get("Properties", {}) or {}
        if kind == "AWS::IAM::Role":
            for policy in props.get("Policies", []) or []:
                yield logical_id, policy.get("PolicyDocument", {})
        elif kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::S3::BucketPolicy",
                      "AWS::SNS::TopicPolicy", "AWS::SQS::QueuePolicy"):
            yield logical_id, props.get("PolicyDocument", {})
        elif kind in ("AWS::OpenSearchService::Domain", "AWS::Elasticsearch::Domain"):
            yield logical_id, props.get("AccessPolicies", {})


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)]
    return []


def wildcard_findings(template: dict) -> list[Finding]:
    """Wildcard actions, resources and principals in Allow statements (Deny ones only narrow access)."""
    findings = []
    for logical_id, resource in template.get("Resources", {}).items():
        if resource.get("Type") == "AWS::IAM::Role" and resource.get("Properties", {}).get("ManagedPolicyArns"):
            findings.append(Finding("wildcard", logical_id, "attaches managed policies (their actions are unseen)"))
    for logical_id, document in policy_documents(template):
        for statement in _statements(document):
            if statement.get("Effect") != "Allow":
                continue
            sid = statement.get("Sid", "")
            if "NotAction" in statement or "NotResource" in statement:
                findings.append(Finding("wildcard", logical_id, f"statement {sid!r} uses NotAction/NotResource"))
            for action in _strings(statement.get("Action")):
                if "*" in action:
                    findings.append(Finding("wildcard", logical_id, f"statement {sid!r} allows action {action!r}"))
            if "*" in _strings(statement.get("Resource")) and sid not in ALLOWED_STAR_RESOURCES:
                findings.append(Finding("wildcard", logical_id, f"statement {sid!r} allows resource '*' "
                                                                "(list it in ALLOWED_STAR_RESOURCES with the reason)"))
            principal = statement.get("Principal")
            if principal == "*" or (isinstance(principal, dict) and "*" in _strings(principal.get("AWS"))):
                findings.append(Finding("wildcard", logical_id, f"statement {sid!r} allows any principal"))
    return findings


def _resources(template: dict, kind: str) -> dict:
    return {k: v for k, v in template.get("Resources", {}).items() if v.get("Type") == kind}


def invariant_findings(template: dict) -> list[Finding]:
    """The deployment rules of issue 9 that neither cfn-lint nor the wildcard check covers."""
    findings: list[Finding] = []
    functions = _resources(template, "AWS::Lambda::Function")
    if set(functions) != set(n.FUNCTIONS.values()):
        findings.append(Finding("functions", "template", f"functions {sorted(functions)} differ from the ones the "
                                                         f"template generator knows {sorted(n.FUNCTIONS.values())}"))
    roles = {}
    for logical_id, function in functions.items():
        role = function["Properties"].get("Role")
        if not (isinstance(role, dict) and role.get("Fn::GetAtt", [None])[0] == f"{logical_id}Role"):
            findings.append(Finding("roles", logical_id, f"does not use its own role {logical_id}Role: {role!r}"))
        roles[logical_id] = role
    if PLACEHOLDER_ROLE in json.dumps(template):
        findings.append(Finding("roles", "template", "the placeholder role of .chalice/config.json is still used"))
    lambda_roles = {k for k, v in _resources(template, "AWS::IAM::Role").items()
                    if "lambda.amazonaws.com" in json.dumps(v["Properties"].get("AssumeRolePolicyDocument"))}
    unused = lambda_roles - {f"{lid}Role" for lid in functions}
    if unused:
        findings.append(Finding("roles", "template", f"roles no function uses: {sorted(unused)}"))

    mappings = _resources(template, "AWS::Lambda::EventSourceMapping")
    if len(mappings) != len(n.CONSUMERS) + len(n.QUEUE_CONSUMERS):
        findings.append(Finding("mappings", "template", f"{len(mappings)} event source mappings, expected "
                                                        f"{len(n.CONSUMERS) + len(n.QUEUE_CONSUMERS)}"))
    for logical_id, mapping in mappings.items():
        props = mapping["Properties"]
        if props.get("FunctionResponseTypes") != ["ReportBatchItemFailures"]:
            findings.append(Finding("mappings", logical_id, "no FunctionResponseTypes [ReportBatchItemFailures]"))
        if ":sqs:" in json.dumps(props.get("EventSourceArn")) or "Queue" in json.dumps(props.get("EventSourceArn")):
            continue  # an SQS mapping: retries and the dead letters are the queue's (RedrivePolicy)
        for key in REQUIRED_MAPPING_KEYS:
            if key not in props:
                findings.append(Finding("mappings", logical_id, f"no {key}"))
        if props.get("MaximumRetryAttempts", -1) == -1 and props.get("MaximumRecordAgeInSeconds", -1) == -1:
            findings.append(Finding("mappings", logical_id, "retries forever: a poison batch blocks its shard"))

    reserved = {k: f["Properties"].get("ReservedConcurrentExecutions") for k, f in functions.items()}
    for single in ("FinalizeWindows", "CommitEvents", "ProcessRegulations"):  # one run at a time
        if reserved.get(single) != 1:
            findings.append(Finding("concurrency", single, f"reserved concurrency {reserved.get(single)}, must be 1"))
    if not reserved.get(n.FUNCTIONS["api_handler"]):
        findings.append(Finding("concurrency", n.FUNCTIONS["api_handler"], "no reserved concurrency: a flood of API "
                                                                           "requests could starve the consumers"))
    total = sum(v for v in reserved.values() if v)
    if total > ACCOUNT_CONCURRENCY - UNRESERVED_MINIMUM:
        findings.append(Finding("concurrency", "template", f"reserves {total} concurrent executions; a default "
                                                           f"account can grant {ACCOUNT_CONCURRENCY - UNRESERVED_MINIMUM}"))

    for logical_id, api in _resources(template, "AWS::ApiGateway::RestApi").items():
        if "*/*" not in api["Properties"].get("Body", {}).get("x-amazon-apigateway-binary-media-types", []):
            findings.append(Finding("api", logical_id, "gzip bodies would be mangled: no binary media type */*"))
    for function in n.SEARCH_FUNCTIONS:
        logical_id = n.FUNCTIONS[function]
        env = functions.get(logical_id, {}).get("Properties", {}).get("Environment", {}).get("Variables", {})
        if "OPENSEARCH_URL" not in env or env.get("EVENTPIPE_OPENSEARCH_SIGV4") != "es":
            findings.append(Finding("search", logical_id, "no OPENSEARCH_URL / EVENTPIPE_OPENSEARCH_SIGV4=es"))
    findings += api_findings(template)
    return findings


def _api_integration_uris(template: dict) -> list[str]:
    uris = []
    for api in _resources(template, "AWS::ApiGateway::RestApi").values():
        for methods in api["Properties"].get("Body", {}).get("paths", {}).values():
            for operation in methods.values():
                integration = operation.get("x-amazon-apigateway-integration", {})
                if integration.get("type") == "aws_proxy":
                    uris.append(json.dumps(integration.get("uri")))
    return uris


def api_findings(template: dict) -> list[Finding]:
    """The API function runs with SnapStart behind its alias; the stage is throttled and logs access."""
    findings: list[Finding] = []
    api_id = n.FUNCTIONS["api_handler"]
    function = template.get("Resources", {}).get(api_id, {}).get("Properties", {})
    if function.get("SnapStart") != {"ApplyOn": "PublishedVersions"}:
        findings.append(Finding("snapstart", api_id, "no SnapStart on published versions"))
    aliases = {k for k, v in _resources(template, "AWS::Lambda::Alias").items()
               if v["Properties"].get("FunctionName") == {"Ref": api_id}}
    for uri in _api_integration_uris(template):
        if not any(f"${{{alias}}}" in uri for alias in aliases):
            findings.append(Finding("snapstart", "RestAPI", f"an integration does not invoke the alias: {uri}"))
            break
    for logical_id, permission in _resources(template, "AWS::Lambda::Permission").items():
        target = permission["Properties"].get("FunctionName")
        if permission["Properties"].get("Principal") == "apigateway.amazonaws.com" and not (
                isinstance(target, dict) and target.get("Ref") in aliases):
            findings.append(Finding("snapstart", logical_id, f"API Gateway may invoke {target!r}, not the alias"))
    stages = _resources(template, "AWS::ApiGateway::Stage")
    for logical_id, stage in stages.items():
        props = stage["Properties"]
        throttled = [m for m in props.get("MethodSettings", []) if m.get("ResourcePath") == "/*"
                     and m.get("HttpMethod") == "*" and "ThrottlingRateLimit" in m and "ThrottlingBurstLimit" in m]
        if not throttled:
            findings.append(Finding("api", logical_id, "no stage-wide throttling (MethodSettings /* *)"))
        if "$context.requestId" not in props.get("AccessLogSetting", {}).get("Format", ""):
            findings.append(Finding("api", logical_id, "no access log with $context.requestId"))
    return findings


def all_findings(template: dict) -> list[Finding]:
    return [*wildcard_findings(template), *invariant_findings(template), *lint_findings(template)]


def main(argv: list[str] | None = None) -> int:
    from chalicelib.runtime.pipeline_config import load_pipeline_config
    from eventpipe.deploy.package import chalice_package, expand_sam

    parser = argparse.ArgumentParser(description="package a stage offline, expand SAM, lint and check it")
    parser.add_argument("--stage", action="append", dest="stages", help="default: dev and prod")
    parser.add_argument("--project-dir", type=Path, default=Path.cwd())
    args = parser.parse_args(argv)
    failed = False
    for stage in args.stages or ["dev", "prod"]:
        with tempfile.TemporaryDirectory() as tmp:
            package = chalice_package(load_pipeline_config(stage), args.project_dir, Path(tmp))
            findings = all_findings(expand_sam(package.template()))
        for finding in findings:
            print(f"{stage}: {finding}")
        print(f"{stage}: {len(findings)} finding(s)")
        failed = failed or bool(findings)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
