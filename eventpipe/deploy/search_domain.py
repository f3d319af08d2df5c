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
"""

from __future__ import annotations

from chalicelib.runtime.pipeline_config import PipelineConfig
from eventpipe.deploy import naming as n
from eventpipe.deploy.iam import search_access_policy
from eventpipe.deploy.naming import StageNames


def domain(config: PipelineConfig, names: StageNames) -> dict:
    search = config.search
    cluster = {"InstanceType": search.instance_type, "InstanceCount": search.instance_count,
               "ZoneAwarenessEnabled": search.zone_awareness}
    if search.zone_awareness:
        cluster["ZoneAwarenessConfig"] = {"AvailabilityZoneCount": 2}
    return {
        n.SEARCH_DOMAIN: {
            "Type": "AWS::OpenSearchService::Domain",
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
            },
        },
    }


def endpoint_url() -> dict:
    """``OPENSEARCH_URL`` for the functions."""
    return {"Fn::Sub": f"https://${{{n.SEARCH_DOMAIN}.DomainEndpoint}}"}
