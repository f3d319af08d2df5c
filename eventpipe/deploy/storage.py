"""Stream, lake bucket, DynamoDB tables and log groups of one stage (CloudFormation resources).

The optional ``KmsKeyArn`` parameter (empty by default) encrypts the DynamoDB tables and the alarm
topic (alarms.topic) with a customer managed key; without it they use AWS owned keys. The key
stays the customer's: its key policy must let DynamoDB use it for this account
(``kms:ViaService dynamodb.<region>.amazonaws.com``), let CloudWatch (``cloudwatch.amazonaws.com``)
and S3 (``s3.amazonaws.com``) call ``kms:GenerateDataKey*`` and ``kms:Decrypt`` to publish to the
topic, and the deploying principal needs ``kms:CreateGrant`` and ``kms:DescribeKey``.
"""

from __future__ import annotations

from chalicelib.lake.units import UNITS_PREFIX
from chalicelib.runtime.pipeline_config import PipelineConfig
from eventpipe.deploy import naming as n
from eventpipe.deploy.naming import StageNames

#: Valid CloudWatch Logs retention values (days).
KMS_KEY_PARAMETER = "KmsKeyArn"
HAS_KMS_KEY = "HasKmsKey"
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
                      2922, 3288, 3653)


def kms_parameters() -> dict:
    return {KMS_KEY_PARAMETER: {
        "Type": "String", "Default": "",
        "Description": "ARN of a customer managed KMS key for the DynamoDB tables and the alarm topic "
                       "(empty: AWS owned keys); see eventpipe/deploy/storage.py for its key policy"}}


def kms_conditions() -> dict:
    return {HAS_KMS_KEY: {"Fn::Not": [{"Fn::Equals": [{"Ref": KMS_KEY_PARAMETER}, ""]}]}}


def with_kms_key(value) -> dict:
    """``value`` when the KmsKeyArn parameter is set, else no property at all."""
    return {"Fn::If": [HAS_KMS_KEY, value, {"Ref": "AWS::NoValue"}]}


def bucket_arn(suffix: str = "") -> dict:
    return {"Fn::Sub": f"${{{n.BUCKET}.Arn}}{suffix}"}


def _data_policies(config: PipelineConfig) -> dict:
    """Keep (prod) or delete (dev) the data when the stack or the resource goes away."""
    policy = "Retain" if config.lifecycle.retain_data else "Delete"
    return {"DeletionPolicy": policy, "UpdateReplacePolicy": policy}


def stream(config: PipelineConfig, names: StageNames) -> dict:
    """The event stream: encrypted with the AWS managed Kinesis key (no key policy to manage)."""
    properties = {
        "Name": names.stream,
        "RetentionPeriodHours": config.stream.retention_hours,
        "StreamModeDetails": {"StreamMode": config.stream.mode},
        "StreamEncryption": {"EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"},
    }
    if config.stream.mode == "PROVISIONED":
        properties["ShardCount"] = config.stream.shards
    return {n.STREAM: {"Type": "AWS::Kinesis::Stream", "Properties": properties}}


#: Days the finalization bookkeeping is kept (rollups/_units/): well past metrics.yaml's max_lateness.
BOOKKEEPING_DAYS = 35


def _expire(rule_id: str, prefix: str, days: int, transitions: list | None = None) -> dict:
    rule = {"Id": rule_id, "Status": "Enabled", "Prefix": prefix}
    if days:
        rule["ExpirationInDays"] = days
    if transitions:
        rule["Transitions"] = transitions
    return rule


def lifecycle_rules(config: PipelineConfig) -> list[dict]:
    """One rule per prefix with an expiry (0 days = keep), plus aborting stale multipart uploads."""
    life = config.lifecycle
    raw_transitions = []
    if life.raw_events_infrequent_access_days and (
            not life.raw_events_days or life.raw_events_infrequent_access_days < life.raw_events_days):
        raw_transitions = [{"StorageClass": "STANDARD_IA",
                            "TransitionInDays": max(30, life.raw_events_infrequent_access_days)}]
    # The raw events Iceberg table: its own maintenance expires rows (retention) and deletes files
    # (chalicelib/lake/raw_maintenance.py); a lifecycle expiry would delete files the table still
    # references, so its data files only move to Infrequent Access. Staged batches are committed
    # within minutes: a week-old one is a leftover of a removed stack. The finalization bookkeeping
    # (done markers, slice manifests, the planner's record) matters while an hour can still receive
    # events (max_lateness, 7 days in metrics.yaml) plus the grace period; without it an hour
    # recomputed later (a deletion request) carries its late counts at least once, as documented.
    rules = [
        _expire("raw-events", "tables/events/data/", 0, raw_transitions),
        _expire("staged-events", "staging/", 7),
        _expire("finalize-bookkeeping", UNITS_PREFIX, BOOKKEEPING_DAYS),
        _expire("bad-rows", "bad-rows/", life.bad_rows_days),
        _expire("dead-letters", n.DEAD_LETTER_PREFIX, life.dead_letter_days),
        _expire("query-results", n.ATHENA_RESULTS_PREFIX, life.query_results_days),
    ]
    rules = [r for r in rules if "ExpirationInDays" in r or "Transitions" in r]
    rules.append({"Id": "abort-incomplete-uploads", "Status": "Enabled", "Prefix": "",
                  "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7}})
    return rules


def bucket(config: PipelineConfig, names: StageNames) -> dict:
    """The lake bucket: SSE-S3, no public access, TLS only, lifecycle per prefix.

    New objects under ``aws/lambda/`` (Lambda's on-failure records) notify the alarm topic.
    """
    properties = {
        "BucketName": {"Fn::Sub": names.bucket_sub},
        "BucketEncryption": {"ServerSideEncryptionConfiguration": [
            {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]},
        "PublicAccessBlockConfiguration": {"BlockPublicAcls": True, "BlockPublicPolicy": True,
                                           "IgnorePublicAcls": True, "RestrictPublicBuckets": True},
        "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
        "LifecycleConfiguration": {"Rules": lifecycle_rules(config)},
        "NotificationConfiguration": {"TopicConfigurations": [{
            "Event": "s3:ObjectCreated:*", "Topic": {"Ref": n.ALARM_TOPIC},
            "Filter": {"S3Key": {"Rules": [{"Name": "prefix", "Value": n.DEAD_LETTER_PREFIX}]}}}]},
    }
    policy = {
        "Version": "2012-10-17",
        "Statement": [{
            # A Deny: the wildcard action and principal only narrow access (TLS-only bucket).
            "Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
            "Resource": [bucket_arn(), bucket_arn("/*")],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }],
    }
    return {
        # S3 checks the topic policy when the notification is configured: create it first.
        n.BUCKET: {"Type": "AWS::S3::Bucket", "DependsOn": [n.ALARM_TOPIC_POLICY], "Properties": properties,
                   **_data_policies(config)},
        n.BUCKET_POLICY: {"Type": "AWS::S3::BucketPolicy",
                          "Properties": {"Bucket": {"Ref": n.BUCKET}, "PolicyDocument": policy}},
    }


def _table(name: str, key: str, config: PipelineConfig) -> dict:
    return {
        "Type": "AWS::DynamoDB::Table",
        "Properties": {
            "TableName": name,
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [{"AttributeName": key, "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": key, "KeyType": "HASH"}],
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            "DeletionProtectionEnabled": config.lifecycle.retain_data,
            "SSESpecification": with_kms_key({"SSEEnabled": True, "SSEType": "KMS",
                                              "KMSMasterKeyId": {"Ref": KMS_KEY_PARAMETER}}),
        },
        **_data_policies(config),
    }


def tables(config: PipelineConfig, names: StageNames) -> dict:
    """The apps table (hashed API keys) and the state table (checkpoints, watermarks)."""
    return {n.APPS_TABLE: _table(names.apps_table, "key_hash", config),
            n.STATE_TABLE: _table(names.state_table, "pk", config)}


def log_groups(config: PipelineConfig, names: StageNames) -> dict:
    """One log group per function, so its retention is set and the role can be scoped to it."""
    days = config.lifecycle.log_retention_days
    if days not in LOG_RETENTION_DAYS:
        raise ValueError(f"lifecycle.log_retention_days must be one of {LOG_RETENTION_DAYS}, got {days}")
    return {f"{logical_id}LogGroup": {"Type": "AWS::Logs::LogGroup",
                                      "Properties": {"LogGroupName": names.log_group(name), "RetentionInDays": days}}
            for name, logical_id in n.FUNCTIONS.items()}
