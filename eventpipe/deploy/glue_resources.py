"""The Glue database, every table (from the same builders as the local stack) and the Athena workgroup.

The table definitions come from :func:`chalicelib.lake.glue.catalog_table_inputs`, the
function the local bootstrap uses, called with a placeholder bucket name. Each string
that holds the placeholder becomes an ``Fn::Sub`` on the lake bucket, with the ``${...}``
of partition projection templates escaped as ``${!...}`` so CloudFormation leaves them be.
:func:`resolve_sub` undoes that for a given bucket name (tests compare both sides).
"""

from __future__ import annotations

import re
from typing import Any

from chalicelib.lake.glue import catalog_table_inputs
from chalicelib.runtime.pipeline_config import PipelineConfig
from eventpipe.deploy import naming as n
from eventpipe.deploy.naming import StageNames

#: Stands for the lake bucket's name while the builders run (not a valid bucket name).
BUCKET_PLACEHOLDER = "@@LAKE_BUCKET@@"
_VARIABLE = re.compile(r"\$\{")


def _sub(value: Any) -> Any:
    """Strings naming the bucket become ``Fn::Sub`` on it; everything else is copied."""
    if isinstance(value, dict):
        return {key: _sub(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_sub(item) for item in value]
    if isinstance(value, str) and BUCKET_PLACEHOLDER in value:
        escaped = _VARIABLE.sub("${!", value)
        return {"Fn::Sub": escaped.replace(BUCKET_PLACEHOLDER, f"${{{n.BUCKET}}}")}
    return value


def resolve_sub(value: Any, bucket: str) -> Any:
    """The plain value CloudFormation makes of :func:`_sub`'s output, for bucket ``bucket``."""
    if isinstance(value, dict):
        if set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
            return value["Fn::Sub"].replace(f"${{{n.BUCKET}}}", bucket).replace("${!", "${")
        return {key: resolve_sub(item, bucket) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve_sub(item, bucket) for item in value]
    return value


def table_logical_id(table_name: str) -> str:
    return f"GlueTable{n.camel(table_name)}"


def catalog(config: PipelineConfig, names: StageNames) -> dict:
    """The database, one ``AWS::Glue::Table`` per catalog table, and the Athena workgroup."""
    resources: dict = {
        n.GLUE_DATABASE: {
            "Type": "AWS::Glue::Database",
            "Properties": {"CatalogId": {"Ref": "AWS::AccountId"}, "DatabaseInput": {
                "Name": names.glue_database,
                "Description": "eventpipe: raw events and metric rollups (Parquet on S3)"}},
        },
    }
    for table_input in catalog_table_inputs(BUCKET_PLACEHOLDER):
        resources[table_logical_id(table_input["Name"])] = {
            "Type": "AWS::Glue::Table",
            "Properties": {"CatalogId": {"Ref": "AWS::AccountId"}, "DatabaseName": {"Ref": n.GLUE_DATABASE},
                           "TableInput": _sub(table_input)},
        }
    resources[n.WORKGROUP] = {
        "Type": "AWS::Athena::WorkGroup",
        "Properties": {
            "Name": names.workgroup,
            "Description": "eventpipe queries; results expire with the bucket's athena-results/ rule",
            "State": "ENABLED",
            "RecursiveDeleteOption": True,  # deleting the stack also drops saved queries
            "WorkGroupConfiguration": {
                "EnforceWorkGroupConfiguration": True,
                "PublishCloudWatchMetricsEnabled": True,
                "BytesScannedCutoffPerQuery": 100 * 1024 ** 3,  # 100 GiB: about $0.54 at $5/TB scanned
                "ResultConfiguration": {
                    "OutputLocation": {"Fn::Sub": f"s3://${{{n.BUCKET}}}/{n.ATHENA_RESULTS_PREFIX}"},
                    "EncryptionConfiguration": {"EncryptionOption": "SSE_S3"}},
            },
        },
    }
    return resources
