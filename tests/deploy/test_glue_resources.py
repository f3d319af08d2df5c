"""The Glue tables of the template are the ones the local bootstrap creates (same builders)."""

from __future__ import annotations

import boto3
from moto import mock_aws

from chalicelib.runtime.clients import Clients
from chalicelib.runtime.settings import Settings
from eventpipe.local.bootstrap import bootstrap
from eventpipe.deploy.glue_resources import resolve_sub

BUCKET = "eventpipe-dev-123456789012-us-east-1"


def _template_tables(template: dict) -> dict:
    return {r["Properties"]["TableInput"]["Name"]: resolve_sub(r["Properties"]["TableInput"], BUCKET)
            for r in template["Resources"].values() if r["Type"] == "AWS::Glue::Table"}


def test_glue_tables_equal_those_the_local_bootstrap_creates(dev_template):
    declared = _template_tables(dev_template)
    with mock_aws():
        bootstrap(Clients(Settings(bucket=BUCKET)))
        glue = boto3.client("glue", region_name="us-east-1")
        created = {t["Name"]: t for t in glue.get_tables(DatabaseName="eventpipe")["TableList"]}
    # The raw events table is Iceberg: the committer creates it at its first run (pyiceberg writes its
    # first metadata file), the template declares the Hive tables.
    assert sorted(declared) == sorted(set(created) - {"events"})
    assert created["events"]["Parameters"]["table_type"] == "ICEBERG"
    for name, table_input in declared.items():
        actual = created[name]
        for key in ("Description", "TableType", "PartitionKeys", "Parameters"):
            assert actual[key] == table_input[key], (name, key)
        for key, value in table_input["StorageDescriptor"].items():
            assert actual["StorageDescriptor"][key] == value, (name, key)


def test_projection_templates_are_escaped_for_fn_sub(dev_template):
    bad_rows = dev_template["Resources"]["GlueTableBadRows"]["Properties"]["TableInput"]
    assert bad_rows["Parameters"]["storage.location.template"] == {
        "Fn::Sub": "s3://${LakeBucket}/bad-rows/${!consumer}/dt=${!dt}/"}
    assert bad_rows["StorageDescriptor"]["Location"] == {"Fn::Sub": "s3://${LakeBucket}/bad-rows/"}
