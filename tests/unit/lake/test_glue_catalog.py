"""Glue tables keep their partition projection on moto; bootstrap is idempotent."""

import boto3
from moto import mock_aws

from chalicelib.runtime.clients import Clients
from chalicelib.runtime.settings import Settings
from eventpipe.local.bootstrap import bootstrap


def test_bootstrap_twice_creates_the_raw_events_table_as_iceberg_once():
    """The raw ``events`` table is an Iceberg table in Glue (Athena reads it as one): identity
    partitions on app_id, dt, hour; a second bootstrap keeps the same table (no new metadata)."""
    from chalicelib.lake.iceberg_io import BotoGlueCatalog

    with mock_aws():
        clients = Clients(Settings())
        bootstrap(clients)
        glue = boto3.client("glue", region_name="us-east-1")
        first = glue.get_table(DatabaseName="eventpipe", Name="events")["Table"]["Parameters"]["metadata_location"]
        bootstrap(clients)  # a second start works
        table = glue.get_table(DatabaseName="eventpipe", Name="events")["Table"]
        assert table["Parameters"]["table_type"] == "ICEBERG"
        assert table["Parameters"]["metadata_location"] == first
        assert first.startswith("s3://eventpipe-lake/tables/events/metadata/")
        iceberg = BotoGlueCatalog(clients.glue, clients.s3).load_table(("eventpipe", "events"))
        assert [f.name for f in iceberg.spec().fields] == ["app_id", "dt", "hour"]
        assert str(iceberg.schema().find_field("event_time").field_type) == "timestamptz"
        assert iceberg.metadata.format_version == 2


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
