"""Glue tables keep their partition projection on moto; bootstrap is idempotent."""

import boto3
from moto import mock_aws

from chalicelib.runtime.clients import Clients
from chalicelib.runtime.settings import Settings
from eventpipe.local.bootstrap import bootstrap


def test_bootstrap_twice_creates_tables_with_partition_projection():
    with mock_aws():
        clients = Clients(Settings())
        bootstrap(clients)
        bootstrap(clients)  # a second start works
        glue = boto3.client("glue", region_name="us-east-1")
        table = glue.get_table(DatabaseName="eventpipe", Name="events")["Table"]
        params = table["Parameters"]
        assert params["projection.enabled"] == "true"
        assert params["projection.app_id.type"] == "injected"
        assert params["storage.location.template"] == \
            "s3://eventpipe-lake/events/app_id=${app_id}/dt=${dt}/hour=${hour}/"
        assert [k["Name"] for k in table["PartitionKeys"]] == ["app_id", "dt", "hour"]
        assert {c["Name"]: c["Type"] for c in table["StorageDescriptor"]["Columns"]}["event_time"] == "timestamp"


def test_rollup_tables_point_at_the_current_definitions_tree():
    from chalicelib.processing import load_metrics
    with mock_aws():
        clients = Clients(Settings())
        bootstrap(clients)
        glue = boto3.client("glue", region_name="us-east-1")
        metric = load_metrics()["event_counts"]
        table = glue.get_table(DatabaseName="eventpipe", Name="event_counts_rollup")["Table"]
        root = f"s3://eventpipe-lake/rollups/event_counts/def={metric.fingerprint}/"
        assert table["StorageDescriptor"]["Location"] == root
        assert table["Parameters"]["storage.location.template"] == root + "stage=${stage}/dt=${dt}/hour=${hour}/"
        assert table["Parameters"]["eventpipe.definition"] == metric.fingerprint
