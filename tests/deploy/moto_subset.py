"""The part of the expanded template that moto's CloudFormation can create, and why the rest cannot.

moto 5.2.5 skips resource types it has no CloudFormation model for (with a warning), and a
``Ref``/``GetAtt`` to a skipped resource then fails the stack. So the test removes them and
puts stand-in strings where other resources refer to them.
"""

from __future__ import annotations

import re

#: Resource type -> why moto (5.2.5) cannot create it from a template.
UNSUPPORTED = {
    "AWS::Glue::Database": "moto's CloudFormation has no Glue models (the Glue API itself works: "
                           "test_glue_tables_equal_local_bootstrap compares the definitions)",
    "AWS::Glue::Table": "moto's CloudFormation has no Glue models",
    "AWS::Athena::WorkGroup": "moto's CloudFormation has no Athena model",
    "AWS::OpenSearchService::Domain": "moto's CloudFormation has no OpenSearch model",
    "AWS::CloudWatch::Alarm": "moto's CloudFormation has no CloudWatch alarm model",
    "AWS::S3::BucketPolicy": "moto's CloudFormation has no bucket policy model",
    "AWS::SNS::TopicPolicy": "moto's CloudFormation has no topic policy model",
    "AWS::ApiGateway::Stage": "moto's CloudFormation has no API Gateway stage model",
    "AWS::ApiGateway::RestApi": "moto does not import the RestApi Body (swagger), so the "
                                "Deployment of an API without methods fails",
    "AWS::ApiGateway::Deployment": "depends on the RestApi's methods (see RestApi)",
    "AWS::ApiGateway::Account": "moto's CloudFormation has no API Gateway account model",
    "AWS::Lambda::Alias": "moto's CloudFormation has no Lambda alias model (the published version is created)",
    "AWS::WAFv2::WebACLAssociation": "moto's CloudFormation has no WAFv2 model (created only with WebAclArn)",
}


def _stand_in(logical_id: str, attribute: str | None = None) -> str:
    return f"stand-in-{logical_id}".lower() + (f"-{attribute}".lower() if attribute else "")


def _replace(value, removed: set[str]):
    if isinstance(value, list):
        return [_replace(item, removed) for item in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Ref"} and value["Ref"] in removed:
        return _stand_in(value["Ref"])
    if set(value) == {"Fn::GetAtt"} and value["Fn::GetAtt"][0] in removed:
        return _stand_in(*value["Fn::GetAtt"][:2])
    if set(value) == {"Fn::Sub"}:
        body = value["Fn::Sub"]
        text, variables = (body, None) if isinstance(body, str) else (body[0], body[1])

        def sub(match: re.Match) -> str:
            name, _, attribute = match.group(1).partition(".")
            return _stand_in(name, attribute or None) if name in removed else match.group(0)

        text = re.sub(r"\$\{([A-Za-z0-9.]+)\}", sub, text)
        if variables is None:
            return {"Fn::Sub": text}
        return {"Fn::Sub": [text, _replace(variables, removed)]}
    return {key: _replace(item, removed) for key, item in value.items()}


def moto_subset(template: dict) -> tuple[dict, dict[str, str]]:
    """(template moto can create, removed logical id -> resource type)."""
    resources = template["Resources"]
    removed = {k: v["Type"] for k, v in resources.items() if v["Type"] in UNSUPPORTED}
    # Permissions whose source is a removed API go too (they only make sense with it).
    removed.update({k: v["Type"] for k, v in resources.items() if v["Type"] == "AWS::Lambda::Permission"
                    and any(r in str(v["Properties"].get("SourceArn")) for r in removed)})
    kept = {}
    for logical_id, resource in resources.items():
        if logical_id in removed:
            continue
        resource = _replace(resource, set(removed))
        depends = resource.get("DependsOn")
        if depends:
            depends = [d for d in ([depends] if isinstance(depends, str) else depends) if d not in removed]
            resource = {**resource, "DependsOn": depends} if depends else {
                k: v for k, v in resource.items() if k != "DependsOn"}
        kept[logical_id] = resource
    outputs = _replace(template.get("Outputs", {}), set(removed))
    return {**template, "Resources": kept, "Outputs": outputs}, removed
