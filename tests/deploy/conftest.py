"""Session-wide packaging: ``chalice package`` + SAM expansion run once per stage per test session."""

from __future__ import annotations

import copy
import os

import pytest

from chalicelib.runtime.pipeline_config import load_pipeline_config
from eventpipe.deploy.package import chalice_package, expand_sam
from tests.conftest import ROOT

os.environ["AWS_EC2_METADATA_DISABLED"] = "true"  # botocore must never probe an instance endpoint
_PACKAGED: dict[str, dict] = {}
_EXPANDED: dict[str, dict] = {}


def packaged(stage: str, tmp_path_factory) -> dict:
    """The stage's SAM template as ``chalice package`` wrote it (a fresh copy)."""
    if stage not in _PACKAGED:
        package = chalice_package(load_pipeline_config(stage), ROOT, tmp_path_factory.mktemp(f"package-{stage}"))
        _PACKAGED[stage] = package.template()
    return copy.deepcopy(_PACKAGED[stage])


def expanded(stage: str, tmp_path_factory) -> dict:
    """The stage's expanded CloudFormation template (a fresh copy: tests may plant faults in it)."""
    if stage not in _EXPANDED:
        _EXPANDED[stage] = expand_sam(packaged(stage, tmp_path_factory))
    return copy.deepcopy(_EXPANDED[stage])


@pytest.fixture
def dev_template(tmp_path_factory) -> dict:
    return expanded("dev", tmp_path_factory)


@pytest.fixture(params=["dev", "prod"])
def stage_template(request, tmp_path_factory) -> tuple[str, dict]:
    return request.param, expanded(request.param, tmp_path_factory)
