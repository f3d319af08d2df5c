"""``eventpipe deploy --stage dev`` and ``eventpipe destroy --stage dev`` (boto3).

deploy: ``chalice package --merge-template`` (offline) -> expand SAM locally -> upload the
code and layer zips (content-addressed, so CloudFormation sees new code as a changed key)
and the template to a deployment bucket -> create or update the stack -> wait -> outputs.

The template CloudFormation receives is the expanded one, exactly what
``eventpipe.deploy.validate`` lints; it still passes CAPABILITY_AUTO_EXPAND so a SAM
template could be sent as is. boto3 rather than the AWS CLI: it is already a dependency,
it runs against moto in tests, and no ``aws cloudformation package`` step is needed.

No app key is created here: on AWS only ``eventpipe --aws apps create NAME`` makes one.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from botocore.exceptions import ClientError, WaiterError

from chalicelib.runtime.pipeline_config import load_pipeline_config
from eventpipe.deploy import api_stage
from eventpipe.deploy import naming as n
from eventpipe.deploy.artifacts import ArtifactFiles, file_sha256
from eventpipe.deploy.naming import StageNames
from eventpipe.deploy.package import chalice_package, expand_sam
from eventpipe.deploy.template import artifact_parameters

CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"]
NO_UPDATES = "No updates are to be performed"
#: States from which only a delete helps (a failed first create).
DEAD_STATES = {"ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "DELETE_FAILED"}


class DeployError(RuntimeError):
    """The stack could not be created, updated or deleted (the message says why and what to do)."""


@dataclass(frozen=True)
class DeployClients:
    """The boto3 clients the commands use (one account and region)."""

    s3: object
    cloudformation: object
    sts: object
    region: str

    @classmethod
    def from_session(cls, session, endpoint_url: str | None = None) -> "DeployClients":
        def client(name: str):
            return session.client(name, endpoint_url=endpoint_url)

        return cls(client("s3"), client("cloudformation"), client("sts"), session.region_name)


@dataclass(frozen=True)
class DeployResult:
    stack: str
    action: str  # "created" | "updated" | "unchanged"
    outputs: dict[str, str]


def deployment_bucket_name(account: str, region: str) -> str:
    return f"eventpipe-deploy-{account}-{region}"


def ensure_deployment_bucket(s3, name: str, region: str) -> None:
    """Create the artifact bucket (private, encrypted) unless it exists."""
    try:
        s3.head_bucket(Bucket=name)
        return
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("404", "NoSuchBucket", "NotFound"):
            raise
    kwargs = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    s3.create_bucket(Bucket=name, **kwargs)
    s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True})
    s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})


def upload_file(s3, bucket: str, prefix: str, path: Path) -> str:
    """Upload under a key named by the content's hash (skipped when already there); returns the key."""
    key = f"{prefix}{file_sha256(path)[:32]}-{path.name}"
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError:
        s3.upload_file(str(path), bucket, key)
    return key


def _stack_status(cloudformation, stack: str) -> str | None:
    try:
        return cloudformation.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"]
    except ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise


def _outputs(cloudformation, stack: str) -> dict[str, str]:
    description = cloudformation.describe_stacks(StackName=stack)["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in description.get("Outputs", [])}


def _failure_reasons(cloudformation, stack: str, limit: int = 5) -> str:
    events = cloudformation.describe_stack_events(StackName=stack)["StackEvents"]
    failed = [f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason', '')}" for e in events
              if e["ResourceStatus"].endswith("FAILED")]
    return "; ".join(failed[:limit]) or "no failed resource reported"


def _wait(cloudformation, waiter: str, stack: str) -> None:
    try:
        cloudformation.get_waiter(waiter).wait(StackName=stack, WaiterConfig={"Delay": 10, "MaxAttempts": 360})
    except WaiterError as exc:
        raise DeployError(f"stack {stack}: {waiter} failed: {_failure_reasons(cloudformation, stack)}") from exc


def deploy(stage: str, clients: DeployClients, project_dir: Path, artifacts: ArtifactFiles | None = None, *,
           build_dir: Path | None = None, template_filter: Callable[[dict], dict] | None = None,
           printer: Callable[[str], None] = print) -> DeployResult:
    """Package, upload and create or update the stage's stack.

    Args:
        stage: a deployment stage of chalicelib/pipeline.toml (dev, prod).
        clients: boto3 clients for the target account and region.
        project_dir: the project root.
        artifacts: code and layer zips; None uses chalice's deployment.zip for every function
            and no layer (only useful where the runtime has the dependencies, e.g. tests).
        build_dir: keeps the packaged files (default: a temporary directory).
        template_filter: applied to the expanded template before upload (tests drop what
            moto cannot create).
        printer: progress lines.
    """
    config = load_pipeline_config(stage)
    names = StageNames(config.deploy.app_name, stage)
    account = clients.sts.get_caller_identity()["Account"]
    bucket = deployment_bucket_name(account, clients.region)
    with tempfile.TemporaryDirectory(prefix="eventpipe-deploy-") as tmp:
        out = build_dir or Path(tmp)
        layers = dict(artifacts.function_layers) if artifacts else {}
        package = chalice_package(config, project_dir, out, layers=layers, region=clients.region)
        code = artifacts.code if artifacts else {function: package.code_zip for function in n.FUNCTIONS}
        sam = package.template()
        if config.api.snapstart:  # a new zip publishes a new version of the API function and moves its alias
            zips = [*code.values(), *(artifacts.layers.values() if artifacts else [])]
            api_stage.pin_version(sam, ",".join(sorted(file_sha256(Path(path)) for path in zips)))
        template = expand_sam(sam, region=clients.region)
        if template_filter:
            template = template_filter(template)
        ensure_deployment_bucket(clients.s3, bucket, clients.region)
        prefix = f"{names.prefix}/"
        code_keys = {function: upload_file(clients.s3, bucket, prefix, Path(path)) for function, path in code.items()}
        layer_keys = {layer: upload_file(clients.s3, bucket, prefix, Path(path))
                      for layer, path in (artifacts.layers.items() if artifacts else [])}
        template_path = out / "cloudformation.json"
        template_path.write_text(json.dumps(template, separators=(",", ":")))
        template_key = upload_file(clients.s3, bucket, f"{prefix}templates/", template_path)
    parameters = [{"ParameterKey": k, "ParameterValue": v}
                  for k, v in artifact_parameters(bucket, code_keys, layer_keys).items()]
    url = f"https://{bucket}.s3.{clients.region}.amazonaws.com/{template_key}"
    cloudformation, stack = clients.cloudformation, names.stack
    status = _stack_status(cloudformation, stack)
    if status in DEAD_STATES:
        raise DeployError(f"stack {stack} is {status}: run `eventpipe destroy --stage {stage}` first "
                          f"({_failure_reasons(cloudformation, stack)})")
    common = {"StackName": stack, "TemplateURL": url, "Parameters": parameters, "Capabilities": CAPABILITIES,
              "Tags": [{"Key": "app", "Value": config.deploy.app_name}, {"Key": "stage", "Value": stage}]}
    if status is None:
        printer(f"creating stack {stack} (an OpenSearch domain takes 15-30 minutes)")
        cloudformation.create_stack(**common, OnFailure="ROLLBACK")
        _wait(cloudformation, "stack_create_complete", stack)
        action = "created"
    else:
        printer(f"updating stack {stack} ({status})")
        try:
            cloudformation.update_stack(**common)
        except ClientError as exc:
            if NO_UPDATES not in str(exc):
                raise
            action = "unchanged"
        else:
            _wait(cloudformation, "stack_update_complete", stack)
            action = "updated"
    outputs = _outputs(cloudformation, stack)
    printer(f"stack {stack} {action}")
    for key, value in sorted(outputs.items()):
        printer(f"  {key}: {value}")
    return DeployResult(stack, action, outputs)


def empty_bucket(s3, bucket: str) -> int:
    """Delete every object (and version) so CloudFormation can delete the bucket; returns the count."""
    deleted = 0
    paginator = s3.get_paginator("list_object_versions")
    for page in paginator.paginate(Bucket=bucket):
        batch = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                 for v in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]]
        for start in range(0, len(batch), 1000):
            s3.delete_objects(Bucket=bucket, Delete={"Objects": batch[start:start + 1000], "Quiet": True})
        deleted += len(batch)
    return deleted


def destroy(stage: str, clients: DeployClients, *, printer: Callable[[str], None] = print) -> bool:
    """Delete the stage's stack; False when there was none.

    Stages with ``retain_data`` (prod) keep their bucket and tables: CloudFormation leaves
    them behind and this prints their names. Otherwise the lake bucket is emptied first.
    """
    config = load_pipeline_config(stage)
    names = StageNames(config.deploy.app_name, stage)
    cloudformation, stack = clients.cloudformation, names.stack
    if _stack_status(cloudformation, stack) is None:
        printer(f"no stack {stack}")
        return False
    outputs = _outputs(cloudformation, stack)
    lake = outputs.get("LakeBucketName")
    if lake and not config.lifecycle.retain_data:
        try:
            printer(f"emptying bucket {lake}: {empty_bucket(clients.s3, lake)} object(s)")
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "NoSuchBucket":
                raise
    printer(f"deleting stack {stack}")
    cloudformation.delete_stack(StackName=stack)
    _wait(cloudformation, "stack_delete_complete", stack)
    if config.lifecycle.retain_data:
        printer(f"kept (retain_data): bucket {lake}, tables {names.apps_table}, {names.state_table}")
    printer(f"stack {stack} deleted")
    return True
