"""The deployed HTTP API: its API Gateway stage and how the stage reaches the API function.

* Stage throttling (``[api]`` of chalicelib/pipeline.toml): API Gateway answers 429 above the
  stage's rate and burst before any Lambda runs, so a flood cannot take the whole account's
  concurrency (the per-app limits of chalicelib/apps/ratelimit.py run inside the function).
* Access logs: one JSON line per request into a log group with the stage's retention. API
  Gateway writes them with the region's *account* logging role (``AWS::ApiGateway::Account``,
  one per account and region): the stack creates that role unless the
  ``ApiGatewayCloudWatchRoleArn`` parameter names an existing one.
* An optional AWS WAF web ACL (``WebAclArn`` parameter, a REGIONAL web ACL; none by default).
* Lambda SnapStart (``[api] snapstart``): SnapStart applies to published versions only, so SAM
  publishes a version and the alias ``live`` (``AutoPublishAlias``) and every integration of the
  API invokes the alias, never ``$LATEST`` (:func:`route_to_alias`, applied to chalice's output).
  The version's identity is pinned to the artifacts and the function's properties
  (:func:`pin_version`): SAM would otherwise hash only the unresolved ``Ref`` of the code key and
  never publish new code.
"""

from __future__ import annotations

import hashlib
import json

from chalicelib.runtime.pipeline_config import PipelineConfig
from eventpipe.deploy import naming as n
from eventpipe.deploy.naming import StageNames

ALIAS = "live"
WEB_ACL_PARAMETER = "WebAclArn"
CLOUDWATCH_ROLE_PARAMETER = "ApiGatewayCloudWatchRoleArn"
HAS_WEB_ACL = "HasWebAcl"
CREATE_CLOUDWATCH_ROLE = "CreateApiGatewayCloudWatchRole"
ACCESS_LOG_GROUP = "ApiAccessLogGroup"
API_GATEWAY_ACCOUNT = "ApiGatewayAccount"
CLOUDWATCH_ROLE = "ApiGatewayCloudWatchRole"
WEB_ACL_ASSOCIATION = "ApiWebAclAssociation"
#: The stage chalice deploys (.chalice/config.json ``api_gateway_stage``) and SAM's logical id for it.
STAGE_NAME = "api"
STAGE_LOGICAL_ID = f"{n.REST_API}{STAGE_NAME}Stage"
#: One JSON object per request: no header or body, so no API key is ever logged.
ACCESS_LOG_FIELDS = {
    "requestId": "$context.requestId", "extendedRequestId": "$context.extendedRequestId",
    "ip": "$context.identity.sourceIp", "userAgent": "$context.identity.userAgent",
    "requestTime": "$context.requestTimeEpoch", "httpMethod": "$context.httpMethod",
    "resourcePath": "$context.resourcePath", "status": "$context.status", "protocol": "$context.protocol",
    "responseLength": "$context.responseLength", "responseLatency": "$context.responseLatency",
    "integrationLatency": "$context.integrationLatency", "integrationStatus": "$context.integrationStatus",
    "error": "$context.error.message", "wafResponseCode": "$context.wafResponseCode",
}


def parameters() -> dict:
    return {
        WEB_ACL_PARAMETER: {"Type": "String", "Default": "",
                            "Description": "ARN of a REGIONAL AWS WAF web ACL for the API stage (empty: none)"},
        CLOUDWATCH_ROLE_PARAMETER: {
            "Type": "String", "Default": "",
            "Description": "ARN of the region's existing API Gateway CloudWatch Logs role (empty: the stack "
                           "creates one and sets it as the account's API Gateway logging role)"},
    }


def conditions() -> dict:
    return {HAS_WEB_ACL: {"Fn::Not": [{"Fn::Equals": [{"Ref": WEB_ACL_PARAMETER}, ""]}]},
            CREATE_CLOUDWATCH_ROLE: {"Fn::Equals": [{"Ref": CLOUDWATCH_ROLE_PARAMETER}, ""]}}


def stage_arn() -> dict:
    return {"Fn::Sub": f"arn:${{AWS::Partition}}:apigateway:${{AWS::Region}}::/restapis/${{{n.REST_API}}}"
                       f"/stages/{STAGE_NAME}"}


def access_log_group_name(names: StageNames) -> str:
    return f"/aws/apigateway/{names.prefix}-access"


def resources(config: PipelineConfig, names: StageNames) -> dict:
    """The access log group, the account logging role and setting, and the optional WAF association."""
    role_policy = {"Version": "2012-10-17", "Statement": [{
        "Sid": "ApiGatewayLogs", "Effect": "Allow",
        # What AmazonAPIGatewayPushToCloudWatchLogs allows, on this account's and region's log groups.
        "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:DescribeLogGroups",
                   "logs:DescribeLogStreams", "logs:PutLogEvents", "logs:GetLogEvents", "logs:FilterLogEvents"],
        "Resource": [{"Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:*"}]}]}
    return {
        ACCESS_LOG_GROUP: {"Type": "AWS::Logs::LogGroup", "Properties": {
            "LogGroupName": access_log_group_name(names),
            "RetentionInDays": config.lifecycle.log_retention_days}},
        CLOUDWATCH_ROLE: {
            "Type": "AWS::IAM::Role", "Condition": CREATE_CLOUDWATCH_ROLE,
            # The region's API Gateway logging setting keeps pointing at it after the stack is gone.
            "DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain",
            "Properties": {
                "Description": "API Gateway: writes API logs to CloudWatch Logs (the account's logging role)",
                "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
                    "Effect": "Allow", "Principal": {"Service": "apigateway.amazonaws.com"},
                    "Action": "sts:AssumeRole"}]},
                "Policies": [{"PolicyName": "push-to-cloudwatch-logs", "PolicyDocument": role_policy}]}},
        API_GATEWAY_ACCOUNT: {"Type": "AWS::ApiGateway::Account", "Properties": {"CloudWatchRoleArn": {
            "Fn::If": [CREATE_CLOUDWATCH_ROLE, {"Fn::GetAtt": [CLOUDWATCH_ROLE, "Arn"]},
                       {"Ref": CLOUDWATCH_ROLE_PARAMETER}]}}},
        WEB_ACL_ASSOCIATION: {"Type": "AWS::WAFv2::WebACLAssociation", "Condition": HAS_WEB_ACL,
                              "DependsOn": [STAGE_LOGICAL_ID],
                              "Properties": {"ResourceArn": stage_arn(), "WebACLArn": {"Ref": WEB_ACL_PARAMETER}}},
    }


def rest_api_override(config: PipelineConfig, names: StageNames, binary_media_types: list[str]) -> dict:
    """What the merge template sets on chalice's ``RestAPI`` (a SAM ``AWS::Serverless::Api``)."""
    api = config.api
    log_group_arn = {"Fn::Sub": f"arn:${{AWS::Partition}}:logs:${{AWS::Region}}:${{AWS::AccountId}}:log-group:"
                                f"${{{ACCESS_LOG_GROUP}}}"}
    return {
        # SAM copies DependsOn to the RestApi; the deployment and stage come after it.
        "DependsOn": [API_GATEWAY_ACCOUNT],
        "Properties": {
            "Name": names.rest_api,
            "DefinitionBody": {"x-amazon-apigateway-binary-media-types": binary_media_types},
            "MethodSettings": [{"ResourcePath": "/*", "HttpMethod": "*",
                                "ThrottlingRateLimit": api.throttling_rate_limit,
                                "ThrottlingBurstLimit": api.throttling_burst_limit}],
            "AccessLogSetting": {"DestinationArn": log_group_arn,
                                 "Format": json.dumps(ACCESS_LOG_FIELDS, separators=(",", ":"))},
        },
    }


def function_override(config: PipelineConfig) -> dict:
    """SnapStart properties of the API function (empty when ``[api] snapstart`` is off)."""
    if not config.api.snapstart:
        return {}
    # A replaced version is deleted once the alias has moved: each cached snapshot is billed.
    return {"AutoPublishAlias": ALIAS, "AutoPublishAliasAllProperties": True, "VersionDeletionPolicy": "Delete",
            "SnapStart": {"ApplyOn": "PublishedVersions"}}


def permission_override(config: PipelineConfig) -> dict:
    """API Gateway may invoke the alias (the permission chalice emits names the function)."""
    if not config.api.snapstart:
        return {}
    return {f"{n.FUNCTIONS['api_handler']}InvokePermission": {
        "Properties": {"FunctionName": {"Ref": f"{n.FUNCTIONS['api_handler']}.Alias"}}}}


def _integrations(template: dict):
    body = template["Resources"][n.REST_API]["Properties"]["DefinitionBody"]
    for methods in body.get("paths", {}).values():
        for operation in methods.values():
            integration = operation.get("x-amazon-apigateway-integration") if isinstance(operation, dict) else None
            if integration and integration.get("type") == "aws_proxy":
                yield integration


def route_to_alias(template: dict) -> int:
    """Points every Lambda proxy integration of chalice's SAM template at the API function's alias.

    Chalice writes ``${APIHandler.Arn}`` (``$LATEST``) into each path's integration URI; the merge
    template cannot reach them (one key per path and method), so the packaged template is
    rewritten in place. Returns the number of integrations rewritten.
    """
    function = n.FUNCTIONS["api_handler"]
    count = 0
    for integration in _integrations(template):
        uri = integration["uri"]["Fn::Sub"]
        integration["uri"] = {"Fn::Sub": uri.replace(f"${{{function}.Arn}}", f"${{{function}.Alias}}")}
        count += 1
    return count


def pin_version(template: dict, artifacts_digest: str) -> str:
    """Sets ``AutoPublishCodeSha256`` of the API function: a digest of its artifacts and properties.

    SAM names the published version after this value, so a new code or layer zip, or any changed
    property (memory, environment, layers...), publishes a new version and moves the alias to it.
    """
    properties = template["Resources"][n.FUNCTIONS["api_handler"]]["Properties"]
    properties.pop("AutoPublishCodeSha256", None)
    digest = hashlib.sha256(json.dumps([artifacts_digest, properties], sort_keys=True).encode()).hexdigest()
    properties["AutoPublishCodeSha256"] = digest
    return digest
