"""The merge template that ``chalice package --merge-template`` combines with chalice's SAM output.

Chalice emits the functions, the event source mappings (batch size, window, starting
position only) and the REST API. This template adds every other resource of a stage and
overrides, per function: runtime, name, code location, layers, its own role, environment and
reserved concurrency; per mapping: the stream, ReportBatchItemFailures, bisection, retries,
record age, parallelization, batching and the on-failure destination, all from
``chalicelib/pipeline.toml``; on the API: its name, binary media types, stage throttling and
access logs, and SnapStart with the alias API Gateway invokes (api_stage.py).

Optional parameters (empty by default): ``WebAclArn`` (a WAF web ACL on the stage),
``KmsKeyArn`` (a customer managed key for the tables and the alarm topic) and
``ApiGatewayCloudWatchRoleArn`` (the region's existing API Gateway logging role).

Chalice's merge is a key-by-key dict merge where lists are replaced whole, so each override
below reuses the keys chalice emits (e.g. the mapping's ``Stream`` stays an ``Fn::Sub``).

The artifact seam (eventpipe/deploy/artifacts.py builds the zips): the template takes the
code and layer locations as CloudFormation parameters, ``ArtifactBucket``, one
``<Function>CodeKey`` per function and one ``<Layer>LayerKey`` per layer, so the same template
deploys any build; :func:`artifact_parameters` maps uploaded keys to those parameters.

CLI: ``python -m eventpipe.deploy.template --stage dev -o build/merge-template.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Mapping, Sequence

from chalicelib.runtime.pipeline_config import ConsumerConfig, PipelineConfig, load_pipeline_config
from eventpipe.deploy.artifact_config import PACKAGE
from eventpipe.deploy import alarms, api_stage, glue_resources, iam, queues, search_domain, storage
from eventpipe.deploy import naming as n
from eventpipe.deploy.naming import StageNames

#: Function -> its layers, in order: the artifact config decides (eventpipe/deploy/artifact_config.py).
DEFAULT_LAYERS: Mapping[str, tuple[str, ...]] = {f.name: f.layers for f in PACKAGE.functions}
ARTIFACT_BUCKET = "ArtifactBucket"
#: Every request body reaches the function byte for byte (base64 in the proxy event, which
#: chalice decodes): gzip bodies arrive with Content-Type application/json or x-ndjson.
BINARY_MEDIA_TYPES = ["*/*"]


def code_key_parameter(function: str) -> str:
    return f"{n.FUNCTIONS[function]}CodeKey"


def layer_logical_id(layer: str) -> str:
    return f"Layer{n.camel(layer)}"


def layer_key_parameter(layer: str) -> str:
    return f"{layer_logical_id(layer)}Key"


def artifact_parameters(bucket: str, code_keys: Mapping[str, str], layer_keys: Mapping[str, str]) -> dict[str, str]:
    """CloudFormation parameter values for uploaded artifacts.

    Args:
        bucket: the deployment bucket holding the zips.
        code_keys: chalice function name (e.g. ``archive_events``) -> S3 key of its code zip.
        layer_keys: layer name (e.g. ``dependencies``) -> S3 key of its zip.
    """
    missing = sorted(set(n.FUNCTIONS) - set(code_keys))
    if missing:
        raise ValueError(f"no code artifact for function(s) {', '.join(missing)}")
    values = {ARTIFACT_BUCKET: bucket}
    values.update({code_key_parameter(f): key for f, key in code_keys.items() if f in n.FUNCTIONS})
    values.update({layer_key_parameter(layer): key for layer, key in layer_keys.items()})
    return values


def mapping_properties(consumer: ConsumerConfig) -> dict:
    """One Kinesis event source mapping (SAM ``Kinesis`` event properties)."""
    return {
        "Stream": {"Fn::Sub": f"${{{n.STREAM}.Arn}}"},  # the key chalice emits: see the module docstring
        "StartingPosition": consumer.starting_position,
        "BatchSize": consumer.batch_size,
        "MaximumBatchingWindowInSeconds": consumer.batching_window_s,
        "ParallelizationFactor": consumer.parallelization_factor,
        "MaximumRetryAttempts": consumer.maximum_retry_attempts,
        "MaximumRecordAgeInSeconds": consumer.maximum_record_age_s,
        "BisectBatchOnFunctionError": consumer.bisect_on_error,
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
        # Lambda writes the failed batch, with its records, under aws/lambda/ in the lake bucket.
        "DestinationConfig": {"OnFailure": {"Destination": {"Fn::GetAtt": [n.BUCKET, "Arn"]}}},
    }


def _environment(function: str, config: PipelineConfig) -> dict:
    variables = {
        "EVENTPIPE_STAGE": config.stage,  # app.py reads its consumers' settings for this stage
        "EVENTPIPE_STREAM": {"Ref": n.STREAM},
        "EVENTPIPE_APPS_TABLE": {"Ref": n.APPS_TABLE},
        "EVENTPIPE_STATE_TABLE": {"Ref": n.STATE_TABLE},
        "EVENTPIPE_BUCKET": {"Ref": n.BUCKET},
        "EVENTPIPE_GLUE_DATABASE": {"Ref": n.GLUE_DATABASE},
        "EVENTPIPE_SEARCH_RETENTION_DAYS": str(config.search.retention_days),
        "EVENTPIPE_SEARCH_REPLICAS": str(config.search.replicas),
    }
    if function == "finalize_windows":  # the planner sends the due units to the workers' queue
        variables["EVENTPIPE_FINALIZE_QUEUE"] = names_queue(config)
        variables["EVENTPIPE_FINALIZE_QUEUE_URL"] = {"Ref": n.FINALIZE_QUEUE}
    if function == "commit_events":  # the raw table's retention is its own maintenance, not a lifecycle rule
        variables["EVENTPIPE_RAW_RETENTION_DAYS"] = str(config.lifecycle.raw_events_days)
    if function in n.SEARCH_FUNCTIONS:
        variables["OPENSEARCH_URL"] = search_domain.endpoint_url()
        variables["EVENTPIPE_OPENSEARCH_SIGV4"] = "es"
    return {"Variables": variables}


def names_queue(config: PipelineConfig) -> str:
    return StageNames(config.deploy.app_name, config.stage).finalize_queue


def _function(function: str, config: PipelineConfig, names: StageNames, layers: Sequence[str]) -> dict:
    logical_id = n.FUNCTIONS[function]
    properties: dict = {
        "FunctionName": names.function(function),
        "Runtime": config.deploy.runtime,
        "Architectures": [config.deploy.architecture],
        "CodeUri": {"Bucket": {"Ref": ARTIFACT_BUCKET}, "Key": {"Ref": code_key_parameter(function)}},
        "Role": {"Fn::GetAtt": [iam.role_logical_id(function), "Arn"]},
        "Layers": [{"Ref": layer_logical_id(layer)} for layer in layers],
        "Environment": _environment(function, config),
    }
    reserved = config.function(function).reserved_concurrency
    if reserved is not None:
        properties["ReservedConcurrentExecutions"] = reserved
    if function == "api_handler":
        properties.update(api_stage.function_override(config))
    if function in n.CONSUMERS:
        properties["Events"] = {f"{logical_id}KinesisEventSource": {
            "Properties": mapping_properties(config.consumer(function))}}
    if function in n.QUEUE_CONSUMERS:
        own = config.function(function)
        properties["Events"] = {f"{logical_id}SqsEventSource": {"Properties": queues.mapping_properties(config,
                                                                                                      function)}}
        properties.update({k: v for k, v in (("MemorySize", own.memory_mb), ("Timeout", own.timeout_s)) if v})
    return {logical_id: {"Properties": properties}}


def _layers(config: PipelineConfig, names: StageNames, layers: Sequence[str]) -> dict:
    return {layer_logical_id(layer): {
        "Type": "AWS::Lambda::LayerVersion",
        "Properties": {
            "LayerName": names.layer(layer),
            "Description": f"eventpipe {layer} (built by eventpipe/deploy/artifacts.py)",
            "Content": {"S3Bucket": {"Ref": ARTIFACT_BUCKET}, "S3Key": {"Ref": layer_key_parameter(layer)}},
            "CompatibleRuntimes": [config.deploy.runtime],
            "CompatibleArchitectures": [config.deploy.architecture],
        }} for layer in layers}


def _parameters(layers: Sequence[str]) -> dict:
    parameters = {ARTIFACT_BUCKET: {"Type": "String", "Description": "Bucket holding the code and layer zips"}}
    for function in n.FUNCTIONS:
        parameters[code_key_parameter(function)] = {"Type": "String", "Description": f"S3 key: {function} code zip"}
    for layer in layers:
        parameters[layer_key_parameter(layer)] = {"Type": "String", "Description": f"S3 key: {layer} layer zip"}
    parameters.update(api_stage.parameters())
    parameters.update(storage.kms_parameters())
    return parameters


def _outputs() -> dict:
    def out(value) -> dict:
        return {"Value": value}

    return {
        "LakeBucketName": out({"Ref": n.BUCKET}),
        "StreamName": out({"Ref": n.STREAM}),
        "AppsTableName": out({"Ref": n.APPS_TABLE}),
        "StateTableName": out({"Ref": n.STATE_TABLE}),
        "GlueDatabaseName": out({"Ref": n.GLUE_DATABASE}),
        "AthenaWorkGroupName": out({"Ref": n.WORKGROUP}),
        "SearchEndpoint": out(search_domain.endpoint_url()),
        "AlarmTopicArn": out({"Ref": n.ALARM_TOPIC}),
        "ApiAccessLogGroupName": out({"Ref": api_stage.ACCESS_LOG_GROUP}),
    }


def merge_template(config: PipelineConfig, layers: Mapping[str, Sequence[str]] = DEFAULT_LAYERS) -> dict:
    """The merge template for ``config.stage``.

    Args:
        config: the pipeline configuration resolved for a deployment stage (dev, prod).
        layers: function -> names of its Lambda layers, in order (default: the artifact config).

    Returns:
        A CloudFormation/SAM fragment for ``chalice package --merge-template``.
    """
    names = StageNames(config.deploy.app_name, config.stage)
    all_layers = tuple(dict.fromkeys(layer for function in n.FUNCTIONS for layer in layers.get(function, ())))
    resources: dict = {}
    for part in (storage.stream(config, names), storage.bucket(config, names), storage.tables(config, names),
                 storage.log_groups(config, names), glue_resources.catalog(config, names),
                 iam.roles(config, names), search_domain.domain(config, names), queues.queues(config, names),
                 search_domain.log_groups(config, names), alarms.topic(config, names),
                 alarms.alarms(config, names), api_stage.resources(config, names),
                 api_stage.permission_override(config), _layers(config, names, all_layers)):
        overlap = set(part) & set(resources)
        if overlap:
            raise ValueError(f"logical id(s) defined twice: {sorted(overlap)}")
        resources.update(part)
    for function in n.FUNCTIONS:
        resources.update(_function(function, config, names, tuple(layers.get(function, ()))))
    resources[n.REST_API] = api_stage.rest_api_override(config, names, BINARY_MEDIA_TYPES)
    return {"Parameters": _parameters(all_layers), "Conditions": {**api_stage.conditions(), **storage.kms_conditions()},
            "Resources": resources, "Outputs": _outputs()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--stage", required=True, help="a stage of chalicelib/pipeline.toml (dev, prod)")
    parser.add_argument("-o", "--output", type=Path, help="write here (default: stdout)")

    args = parser.parse_args(argv)
    template = merge_template(load_pipeline_config(args.stage))
    text = json.dumps(template, indent=2) + "\n"
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
