"""Run ``chalice package --merge-template`` offline, and expand SAM into plain CloudFormation.

Chalice runs pip for ``requirements.txt`` and would silently drop wheels it cannot get for
its runtime (pyarrow, numpy, duckdb: see shared/platform-notes.md). The dependencies come
from the layers instead, so chalice packages a copy of the project whose requirements.txt
is empty: only app.py, chalicelib/ and .chalice/config.json are copied.

With SnapStart on the API (``[api] snapstart``), the packaged SAM template is then rewritten
where the merge template cannot reach: each API integration invokes the function's alias, and
the published version is named after the artifacts and the function's properties
(eventpipe/deploy/api_stage.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from chalicelib.runtime.pipeline_config import PipelineConfig
from eventpipe.deploy import api_stage
from eventpipe.deploy.template import DEFAULT_LAYERS, merge_template

PROJECT_FILES = ("app.py", "chalicelib", ".chalice/config.json")


class PackageError(RuntimeError):
    """``chalice package`` or the SAM expansion failed."""


@dataclass(frozen=True)
class Package:
    """What ``chalice package`` wrote: the SAM template and chalice's own code zip."""

    template_path: Path
    code_zip: Path

    def template(self) -> dict:
        return json.loads(self.template_path.read_text())


def _chalice_command() -> list[str]:
    script = Path(sys.executable).with_name("chalice")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from chalice.cli import main; sys.exit(main())"]


def _copy_project(project_dir: Path, into: Path) -> None:
    for relative in PROJECT_FILES:
        source = project_dir / relative
        target = into / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, target)
    (into / "requirements.txt").write_text("")  # dependencies come from the layers


def chalice_package(config: PipelineConfig, project_dir: Path, out_dir: Path,
                    layers: Mapping[str, tuple[str, ...]] = DEFAULT_LAYERS, region: str = "us-east-1") -> Package:
    """Write the merge template, package the stage and return the SAM template's location.

    Args:
        config: the stage's pipeline configuration.
        project_dir: the project root (app.py, chalicelib/, .chalice/).
        out_dir: receives merge-template.json, sam.json and deployment.zip.
        layers: function -> the layer names the template attaches to it.
        region: chalice needs one to build ARNs; nothing is called.

    With SnapStart the version is pinned to the function's properties only: a deployment re-pins
    it to the zips it uploads (``api_stage.pin_version``).
    """
    out_dir = out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    merge_path = out_dir / "merge-template.json"
    merge_path.write_text(json.dumps(merge_template(config, layers), indent=2))
    with tempfile.TemporaryDirectory(prefix="eventpipe-package-") as tmp:
        work = Path(tmp)
        _copy_project(project_dir, work / "project")
        env = {**os.environ, "AWS_DEFAULT_REGION": region, "AWS_EC2_METADATA_DISABLED": "true"}
        env.pop("AWS_PROFILE", None)  # chalice package reads no account: never pick a profile
        done = subprocess.run([*_chalice_command(), "package", "--stage", config.stage, "--merge-template",
                               str(merge_path), str(work / "out")], cwd=work / "project", env=env,
                              capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise PackageError(f"chalice package failed ({done.returncode}): {done.stderr.strip() or done.stdout}")
        shutil.copy2(work / "out" / "deployment.zip", out_dir / "deployment.zip")
        template = json.loads((work / "out" / "sam.json").read_text())
    if config.api.snapstart:
        if not api_stage.route_to_alias(template):
            raise PackageError("chalice emitted no Lambda proxy integration to route to the API alias")
        api_stage.pin_version(template, "")
    (out_dir / "sam.json").write_text(json.dumps(template, indent=2))
    return Package(out_dir / "sam.json", out_dir / "deployment.zip")


def expand_sam(template: dict, region: str = "us-east-1") -> dict:
    """The SAM template as plain CloudFormation (what cfn-lint and moto can read).

    Offline: no AWS call is made (the template names no managed policy, and the region only
    fills ``AWS::Region`` where SAM needs a value).

    Args:
        template: a template with ``Transform: AWS::Serverless-2016-10-31``.
        region: the region SAM assumes.
    """
    import boto3
    from samtranslator.model.exceptions import InvalidDocumentException
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    from samtranslator.metrics.metrics import DummyMetricsPublisher, Metrics

    metrics = Metrics("ServerlessTransform", DummyMetricsPublisher())
    translator = Translator({}, Parser(), boto_session=boto3.session.Session(region_name=region), metrics=metrics)
    try:
        return translator.translate(json.loads(json.dumps(template)), parameter_values={},
                                    get_managed_policy_map=lambda: {})
    except InvalidDocumentException as exc:
        causes = "; ".join(str(cause) for cause in exc.causes)
        raise PackageError(f"SAM could not expand the template: {causes}") from exc
    finally:
        metrics.publish()  # to the dummy publisher: nothing leaves the machine
