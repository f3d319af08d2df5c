"""``deploy`` and ``destroy`` against moto server's CloudFormation (what moto can create of the stack).

moto cannot create every resource type of the template: tests/deploy/moto_subset.py lists
them with the reason, and the test checks that list is exactly what was left out.
"""

from __future__ import annotations

import json

import boto3
import pytest
from moto.server import ThreadedMotoServer

from eventpipe.deploy.commands import DeployClients, deploy, destroy
from eventpipe.deploy.template import layer_logical_id
from tests.conftest import ROOT
from tests.deploy.artifact_fixtures import target_artifacts  # noqa: F401 - a fixture
from tests.deploy.moto_subset import UNSUPPORTED, moto_subset

LEFT_OUT: dict[str, str] = {}


def _filter(template: dict) -> dict:
    subset, removed = moto_subset(template)
    LEFT_OUT.update(removed)
    return subset


@pytest.fixture
def moto_clients():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    session = boto3.session.Session(region_name="us-east-1", aws_access_key_id="testing",
                                    aws_secret_access_key="testing")
    url = f"http://{host}:{port}"
    try:
        yield DeployClients.from_session(session, url), session, url
    finally:
        server.stop()


def test_deploy_creates_the_stack_and_destroy_removes_it(moto_clients, tmp_path, target_artifacts):  # noqa: F811
    clients, session, url = moto_clients
    lines: list[str] = []
    result = deploy("dev", clients, ROOT, target_artifacts.deploy_files(), build_dir=tmp_path,
                    template_filter=_filter, printer=lines.append)
    assert result.action == "created"
    assert set(LEFT_OUT.values()) <= set(UNSUPPORTED) | {"AWS::Lambda::Permission"}
    assert result.outputs["StreamName"] == "eventpipe-dev-events"
    assert result.outputs["LakeBucketName"] == "eventpipe-dev-123456789012-us-east-1"

    lam = session.client("lambda", endpoint_url=url)
    mappings = lam.list_event_source_mappings()["EventSourceMappings"]
    kinesis_mappings = [m for m in mappings if ":kinesis:" in m["EventSourceArn"]]
    (queue_mapping,) = [m for m in mappings if ":sqs:" in m["EventSourceArn"]]  # the finalize-units queue
    assert len(kinesis_mappings) == 3
    assert all(m["FunctionResponseTypes"] == ["ReportBatchItemFailures"] and m["BisectBatchOnFunctionError"]
               for m in kinesis_mappings)
    assert queue_mapping["EventSourceArn"].endswith(":eventpipe-dev-finalize-units")
    assert queue_mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    sqs = session.client("sqs", endpoint_url=url)
    dlq = sqs.get_queue_url(QueueName="eventpipe-dev-finalize-units-dlq")["QueueUrl"]
    assert dlq
    assert lam.get_function_concurrency(FunctionName="eventpipe-dev-finalize_windows")[
        "ReservedConcurrentExecutions"] == 1
    roles = {lam.get_function(FunctionName=f"eventpipe-dev-{name}")["Configuration"]["Role"]
             for name in ("api_handler", "archive_events", "aggregate_events", "index_events",
                          "finalize_windows", "search_retention")}
    assert len(roles) == 6  # one role per function
    kinesis = session.client("kinesis", endpoint_url=url)
    # (moto's CloudFormation ignores StreamEncryption: test_template_resources checks the template)
    assert kinesis.describe_stream_summary(StreamName="eventpipe-dev-events")["StreamDescriptionSummary"][
        "OpenShardCount"] == 1

    # Each function runs python3.12 with the layers the artifact config gives it (moto ignores
    # layers when it creates a function, so read them from the template the stack was made from).
    body = session.client("cloudformation", endpoint_url=url).get_template(StackName="eventpipe-dev")["TemplateBody"]
    body = body if isinstance(body, dict) else json.loads(body)
    functions = {r["Properties"]["FunctionName"]: r["Properties"] for r in body["Resources"].values()
                 if r["Type"] == "AWS::Lambda::Function"}
    for name, spec in target_artifacts.functions.items():
        properties = functions[f"eventpipe-dev-{name}"]
        assert lam.get_function(FunctionName=f"eventpipe-dev-{name}")["Configuration"]["Runtime"] == "python3.12"
        assert [ref["Ref"] for ref in properties.get("Layers", [])] == [layer_logical_id(layer)
                                                                        for layer in spec.layers], name

    # SnapStart: moto ignores the setting and has no alias model, but publishes SAM's version of the API.
    api = functions["eventpipe-dev-api_handler"]
    assert api["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    published = [v["Version"] for v in lam.list_versions_by_function(FunctionName="eventpipe-dev-api_handler")[
        "Versions"] if v["Version"] != "$LATEST"]
    assert published == ["1"]
    assert "AWS::Lambda::Alias" in LEFT_OUT.values()

    again = deploy("dev", clients, ROOT, target_artifacts.deploy_files(), template_filter=_filter,
                   printer=lines.append)
    assert again.action in ("unchanged", "updated")

    s3 = session.client("s3", endpoint_url=url)
    s3.put_object(Bucket=result.outputs["LakeBucketName"], Key="events/app_id=demo/x.parquet", Body=b"x")
    assert destroy("dev", clients, printer=lines.append) is True
    assert "eventpipe-dev-events" not in kinesis.list_streams()["StreamNames"]
    assert destroy("dev", clients, printer=lines.append) is False


def test_deploy_without_reachable_aws_fails_fast_with_a_clear_message(capsys):
    from eventpipe import cli
    from eventpipe.local.stack import free_port
    unreachable = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    assert cli.main(["deploy", "--stage", "dev", "--endpoint-url", unreachable]) == 2
    assert "AWS is not reachable with the current credentials" in capsys.readouterr().err
