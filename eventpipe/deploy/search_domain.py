"""The Amazon OpenSearch Service domain (a provisioned domain, not a serverless collection).

Why a domain (figures in docs/deploy.md): at rest, one t3.small.search node costs about
$27/month against $175/month for the smallest OpenSearch Serverless collection (0.5 indexing
+ 0.5 search OCU without redundancy; $350 with it); at prod size two m6g.large.search nodes
are still below a redundant collection's floor. The daily-index design (index templates,
``_cat/indices``, deleting whole indices) and the cluster-status and JVM-pressure alarms are
domain features too.

Reachability: a public HTTPS endpoint whose resource policy allows only the three search
functions' roles, so every request must be SigV4-signed by one of them
(``EVENTPIPE_OPENSEARCH_SIGV4=es``). A VPC domain would also need the functions in the VPC
and interface endpoints (Kinesis, Logs) or a NAT gateway, at more than the domain's own
dev cost, for no gain in who can call it.

Logs: the domain publishes its search and indexing slow logs and its error (application) logs
to CloudWatch log groups with the stage's retention (a log resource policy lets the OpenSearch
service write to exactly those groups). Audit logs are not published: OpenSearch Service offers
them only with fine-grained access control, which would move authorization from this IAM
resource policy into the security plugin's role mappings (a master user and a mapping per
function role); the IAM policy keeps one place for who may call what, and CloudTrail has the
domain's configuration calls. Slow logs are written only for indices whose settings set
thresholds (``index.search.slowlog.threshold.*``, ``index.indexing.slowlog.threshold.*``); the
daily indices' template sets them (``SLOWLOG_THRESHOLDS`` in chalicelib/search/template.py).
"""

from __future__ import annotations

import json

from chalicelib.runtime.pipeline_config import PipelineConfig
from eventpipe.deploy import naming as n
from eventpipe.deploy.iam import search_access_policy
from eventpipe.deploy.naming import StageNames

#: OpenSearch log type -> logical id suffix of its log group.
LOG_TYPES = {"SEARCH_SLOW_LOGS": "SearchSlow", "INDEX_SLOW_LOGS": "IndexSlow", "ES_APPLICATION_LOGS": "Application"}
LOG_POLICY = "SearchLogsResourcePolicy"


def log_group_id(log_type: str) -> str:
    return f"{n.SEARCH_DOMAIN}{LOG_TYPES[log_type]}LogGroup"


def log_groups(config: PipelineConfig, names: StageNames) -> dict:
    """One log group per published log type, and the policy that lets the service write to them."""
    groups = {log_group_id(kind): {"Type": "AWS::Logs::LogGroup", "Properties": {
        "LogGroupName": f"/aws/opensearch/{names.search_domain}/{suffix.lower()}",
        "RetentionInDays": config.lifecycle.log_retention_days}} for kind, suffix in LOG_TYPES.items()}
    policy = {"Version": "2012-10-17", "Statement": [{
        "Sid": "OpenSearchLogs", "Effect": "Allow", "Principal": {"Service": "es.amazonaws.com"},
        "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": [f"${{{log_group_id(kind)}.Arn}}" for kind in LOG_TYPES],
        "Condition": {"StringEquals": {"aws:SourceAccount": "${AWS::AccountId}"}}}]}
    # A log resource policy is a JSON string: Fn::Sub fills in the ARNs and the account.
    document = {"Fn::Sub": json.dumps(policy, separators=(",", ":"))}
    groups[LOG_POLICY] = {"Type": "AWS::Logs::ResourcePolicy", "Properties": {
        "PolicyName": f"{names.prefix}-opensearch-logs", "PolicyDocument": document}}
    return groups


def domain(config: PipelineConfig, names: StageNames) -> dict:
    search = config.search
    cluster = {"InstanceType": search.instance_type, "InstanceCount": search.instance_count,
               "ZoneAwarenessEnabled": search.zone_awareness}
    if search.zone_awareness:
        cluster["ZoneAwarenessConfig"] = {"AvailabilityZoneCount": 2}
    return {
        n.SEARCH_DOMAIN: {
            "Type": "AWS::OpenSearchService::Domain",
            "DependsOn": [LOG_POLICY],  # the service checks it may write when publishing is enabled
            # Indices are rebuilt from the stream and the lake is the record: no snapshot to keep.
            "DeletionPolicy": "Delete",
            "UpdateReplacePolicy": "Delete",
            "Properties": {
                "DomainName": names.search_domain,
                "EngineVersion": search.engine_version,
                "ClusterConfig": cluster,
                "EBSOptions": {"EBSEnabled": True, "VolumeType": "gp3", "VolumeSize": search.volume_gb},
                "EncryptionAtRestOptions": {"Enabled": True},
                "NodeToNodeEncryptionOptions": {"Enabled": True},
                "DomainEndpointOptions": {"EnforceHTTPS": True,
                                          "TLSSecurityPolicy": "Policy-Min-TLS-1-2-2019-07"},
                "AccessPolicies": search_access_policy(names),
                "LogPublishingOptions": {kind: {"Enabled": True, "CloudWatchLogsLogGroupArn": {
                    "Fn::GetAtt": [log_group_id(kind), "Arn"]}} for kind in LOG_TYPES},
            },
        },
    }


def endpoint_url() -> dict:
    """``OPENSEARCH_URL`` for the functions."""
    return {"Fn::Sub": f"https://${{{n.SEARCH_DOMAIN}.DomainEndpoint}}"}
