"""What the expanded template creates, checked against chalicelib/pipeline.toml."""

from __future__ import annotations

import json

import pytest

from chalicelib.runtime.pipeline_config import load_pipeline_config
from eventpipe.deploy import naming as n
from eventpipe.deploy.iam import KINESIS_MAPPING_ACTIONS


def _mapping(template: dict, consumer: str) -> dict:
    logical_id = n.FUNCTIONS[consumer]
    return template["Resources"][f"{logical_id}{logical_id}KinesisEventSource"]["Properties"]


def _statements(template: dict, function: str) -> dict:
    role = template["Resources"][f"{n.FUNCTIONS[function]}Role"]["Properties"]
    return {s["Sid"]: s for s in role["Policies"][0]["PolicyDocument"]["Statement"]}


@pytest.mark.parametrize("consumer", n.CONSUMERS)
def test_each_mapping_takes_its_settings_from_the_pipeline_config(stage_template, consumer):
    stage, template = stage_template
    expected = load_pipeline_config(stage).consumer(consumer)
    props = _mapping(template, consumer)
    assert props["EventSourceArn"] == {"Fn::Sub": "${EventStream.Arn}"}  # one key: chalice's Fn::Sub reused
    assert (props["BatchSize"], props["MaximumBatchingWindowInSeconds"], props["StartingPosition"],
            props["ParallelizationFactor"], props["MaximumRetryAttempts"], props["MaximumRecordAgeInSeconds"],
            props["BisectBatchOnFunctionError"]) == (
        expected.batch_size, expected.batching_window_s, expected.starting_position,
        expected.parallelization_factor, expected.maximum_retry_attempts, expected.maximum_record_age_s,
        expected.bisect_on_error)
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["DestinationConfig"] == {"OnFailure": {"Destination": {"Fn::GetAtt": ["LakeBucket", "Arn"]}}}


@pytest.mark.parametrize("consumer", n.CONSUMERS)
def test_consumer_roles_can_read_the_stream_and_write_failed_batches(dev_template, consumer):
    statements = _statements(dev_template, consumer)
    assert statements["ReadStream"]["Action"] == KINESIS_MAPPING_ACTIONS
    assert statements["ReadStream"]["Resource"] == [{"Fn::GetAtt": ["EventStream", "Arn"]}]
    assert statements["OnFailureDestination"]["Action"] == ["s3:PutObject"]
    assert statements["OnFailureDestination"]["Resource"] == [{"Fn::Sub": "${LakeBucket.Arn}/aws/lambda/*"}]
    assert "s3:ListBucket" in statements["ListLake"]["Action"]


def test_api_role_can_put_records_but_not_read_the_stream(dev_template):
    statements = _statements(dev_template, "api_handler")
    # PutRecords for POST /v1/events; describe/list shards for health and GET /v1/pipeline; never a read.
    assert set(statements["Ingest"]["Action"]) == {"kinesis:PutRecords", "kinesis:DescribeStreamSummary",
                                                   "kinesis:ListShards"}
    actions = {a for st in statements.values() for a in st["Action"]}
    assert not actions & {"kinesis:GetRecords", "kinesis:GetShardIterator", "kinesis:SubscribeToShard"}
    assert "ReadStream" not in statements and "State" not in statements
    assert statements["WriteBadRows"]["Resource"] == [{"Fn::Sub": "${LakeBucket.Arn}/bad-rows/ingest/*"}]


def test_only_the_retention_role_may_delete_indices(dev_template):
    deleters = [f for f in n.FUNCTIONS if "es:ESHttpDelete" in _statements(dev_template, f).get(
        "Search", {}).get("Action", [])]
    assert deleters == ["search_retention"]


def test_search_domain_admits_only_the_search_function_roles(stage_template):
    _, template = stage_template
    props = template["Resources"]["SearchDomain"]["Properties"]
    principals = [s["Principal"]["AWS"] for s in props["AccessPolicies"]["Statement"]]
    assert {p["Fn::GetAtt"][0] for (p,) in principals} == {f"{n.FUNCTIONS[f]}Role" for f in n.SEARCH_FUNCTIONS}
    assert props["EncryptionAtRestOptions"] == {"Enabled": True}
    assert props["NodeToNodeEncryptionOptions"] == {"Enabled": True}
    assert props["DomainEndpointOptions"]["EnforceHTTPS"] is True


def test_search_functions_get_the_domain_endpoint_and_sigv4(dev_template):
    for function, logical_id in n.FUNCTIONS.items():
        env = dev_template["Resources"][logical_id]["Properties"]["Environment"]["Variables"]
        if function in n.SEARCH_FUNCTIONS:
            assert env["OPENSEARCH_URL"] == {"Fn::Sub": "https://${SearchDomain.DomainEndpoint}"}
            assert env["EVENTPIPE_OPENSEARCH_SIGV4"] == "es"
        else:
            assert "OPENSEARCH_URL" not in env
        assert env["EVENTPIPE_BUCKET"] == {"Ref": "LakeBucket"}
        assert env["EVENTPIPE_STAGE"] == "dev"  # app.py resolves chalicelib/pipeline.toml for it
        assert env["EVENTPIPE_STREAM"] == {"Ref": "EventStream"}


def test_dev_uses_one_small_node_and_prod_two_with_replicas(tmp_path_factory):
    from tests.deploy.conftest import expanded

    dev, prod = (expanded(s, tmp_path_factory)["Resources"] for s in ("dev", "prod"))
    assert dev["SearchDomain"]["Properties"]["ClusterConfig"]["InstanceType"] == "t3.small.search"
    assert prod["SearchDomain"]["Properties"]["ClusterConfig"]["InstanceCount"] == 2
    assert dev["IndexEvents"]["Properties"]["Environment"]["Variables"]["EVENTPIPE_SEARCH_REPLICAS"] == "0"
    assert prod["IndexEvents"]["Properties"]["Environment"]["Variables"]["EVENTPIPE_SEARCH_REPLICAS"] == "1"
    assert dev["EventStream"]["Properties"]["StreamModeDetails"] == {"StreamMode": "PROVISIONED"}
    assert prod["EventStream"]["Properties"]["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"}
    assert "ShardCount" not in prod["EventStream"]["Properties"]
    assert prod["LakeBucket"]["DeletionPolicy"] == "Retain" and dev["LakeBucket"]["DeletionPolicy"] == "Delete"


def test_stream_is_encrypted_and_tables_have_point_in_time_recovery(dev_template):
    resources = dev_template["Resources"]
    assert resources["EventStream"]["Properties"]["StreamEncryption"] == {"EncryptionType": "KMS",
                                                                          "KeyId": "alias/aws/kinesis"}
    for table in ("AppsTable", "StateTable"):
        assert resources[table]["Properties"]["PointInTimeRecoverySpecification"] == {
            "PointInTimeRecoveryEnabled": True}


def test_bucket_is_encrypted_private_tls_only_with_lifecycle_per_prefix(dev_template):
    resources = dev_template["Resources"]
    bucket = resources["LakeBucket"]["Properties"]
    assert bucket["BucketName"] == {"Fn::Sub": "eventpipe-dev-${AWS::AccountId}-${AWS::Region}"}
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "AES256"}
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    (deny,) = resources["LakeBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} and deny["Effect"] == "Deny"
    life = load_pipeline_config("dev").lifecycle
    rules = {r["Prefix"]: r.get("ExpirationInDays") for r in bucket["LifecycleConfiguration"]["Rules"]}
    # The raw events table's data files never expire by lifecycle (its own maintenance deletes them); they
    # move to Infrequent Access only when that comes before the table's retention (not on dev: 30 and 30 days).
    assert life.raw_events_infrequent_access_days >= life.raw_events_days
    assert rules == {"staging/": 7, "rollups/_units/": 35, "bad-rows/": life.bad_rows_days,
                     "aws/lambda/": life.dead_letter_days, "athena-results/": life.query_results_days, "": None}


def test_the_finalizer_the_committer_and_the_api_alone_reserve_concurrency(stage_template):
    """The finalizer's planner and the committer (the raw table's only writer) run one at a time (1 each);
    the finalize workers (pipeline.toml) and the API (100) are capped so they cannot starve the consumers."""
    _, template = stage_template
    reserved = {k: v["Properties"].get("ReservedConcurrentExecutions")
                for k, v in template["Resources"].items() if v["Type"] == "AWS::Lambda::Function"}
    workers = load_pipeline_config(stage_template[0]).function("finalize_worker").reserved_concurrency
    assert reserved == {**{k: None for k in n.FUNCTIONS.values()}, "FinalizeWindows": 1, "CommitEvents": 1,
                        "ProcessRegulations": 1,
                        "APIHandler": 100, "FinalizeWorker": workers}


def test_gzip_bodies_pass_as_binary(dev_template):
    body = dev_template["Resources"]["RestAPI"]["Properties"]["Body"]
    assert body["x-amazon-apigateway-binary-media-types"] == ["*/*"]
    assert dev_template["Resources"]["RestAPI"]["Properties"]["Name"] == "eventpipe-dev"


def test_alarms_cover_consumers_functions_api_and_search(dev_template):
    alarms = {k: v["Properties"] for k, v in dev_template["Resources"].items() if v["Type"] == "AWS::CloudWatch::Alarm"}
    metrics = {(a["Namespace"], a["MetricName"], json.dumps(a["Dimensions"][0]["Value"])) for a in alarms.values()}
    for consumer in n.CONSUMERS:
        assert ("AWS/Lambda", "IteratorAge", f'"eventpipe-dev-{consumer}"') in metrics
        assert ("AWS/Lambda", "DestinationDeliveryFailures", f'"eventpipe-dev-{consumer}"') in metrics
    for function in n.FUNCTIONS:
        assert ("AWS/Lambda", "Errors", f'"eventpipe-dev-{function}"') in metrics
        assert ("AWS/Lambda", "Throttles", f'"eventpipe-dev-{function}"') in metrics
    assert {m[:2] for m in metrics} >= {("AWS/ApiGateway", "5XXError"), ("AWS/ApiGateway", "Latency"),
                                         ("AWS/ES", "ClusterStatus.red"), ("AWS/ES", "JVMMemoryPressure")}
    assert all(a["AlarmActions"] == [{"Ref": "AlarmTopic"}] for a in alarms.values())
    notice = dev_template["Resources"]["LakeBucket"]["Properties"]["NotificationConfiguration"]
    assert notice["TopicConfigurations"][0]["Filter"]["S3Key"]["Rules"] == [{"Name": "prefix",
                                                                            "Value": "aws/lambda/"}]


def test_the_finalize_worker_consumes_its_queue_with_partial_batch_responses_and_a_dead_letter_queue(dev_template):
    """The worker's SQS mapping reports batch item failures; its queue redrives to a DLQ after
    max_receive_count receives; an alarm watches the DLQ; only the planner may send, only the worker receive."""
    resources = dev_template["Resources"]
    worker_config = load_pipeline_config("dev").function("finalize_worker")
    (mapping,) = [v["Properties"] for v in resources.values() if v["Type"] == "AWS::Lambda::EventSourceMapping"
                  and "FinalizeUnitsQueue" in json.dumps(v["Properties"]["EventSourceArn"])]
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BatchSize"] == worker_config.batch_size
    queue = resources["FinalizeUnitsQueue"]["Properties"]
    assert queue["RedrivePolicy"]["maxReceiveCount"] == worker_config.max_receive_count
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["FinalizeUnitsDeadLetterQueue", "Arn"]}
    alarm = resources["FinalizeUnitsDeadLettersAlarm"]["Properties"]
    assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": "eventpipe-dev-finalize-units-dlq"}]
    senders, receivers = set(), set()
    for logical_id, resource in resources.items():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        for policy in resource["Properties"].get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                if "sqs:SendMessage" in statement["Action"]:
                    senders.add(logical_id)
                if "sqs:ReceiveMessage" in statement["Action"]:
                    receivers.add(logical_id)
    assert senders == {"FinalizeWindowsRole"} and receivers == {"FinalizeWorkerRole"}
    worker = resources["FinalizeWorker"]["Properties"]
    assert (worker["MemorySize"], worker["Timeout"]) == (worker_config.memory_mb, worker_config.timeout_s)
