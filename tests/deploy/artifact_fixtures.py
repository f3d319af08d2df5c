"""Fixtures of the artifact tests (imported by the test modules; tests/deploy/conftest.py stays free).

``target_artifacts`` are the real python3.12 artifacts (what the size tests measure);
``runnable_artifacts`` are those too when python3.12 is installed here, otherwise the
same pins built for this machine's Python (docs/deploy.md: "Lambda artifacts").
Both reuse the cache under ~/.cache/eventpipe/artifacts.
"""

from __future__ import annotations

import pytest

from eventpipe.deploy.artifact_config import PACKAGE, runtime_spec
from eventpipe.deploy.artifacts import Artifacts, build_artifacts
from eventpipe.deploy.interpreters import find_python
from eventpipe.deploy.sandbox import local_runtime


@pytest.fixture(scope="session")
def target_artifacts(tmp_path_factory) -> Artifacts:
    return build_artifacts(tmp_path_factory.mktemp("artifacts-target"), PACKAGE.runtime, check=False)


@pytest.fixture(scope="session")
def runnable_artifacts(target_artifacts, tmp_path_factory) -> Artifacts:
    if find_python(runtime_spec(PACKAGE.runtime).python):
        return target_artifacts
    return build_artifacts(tmp_path_factory.mktemp("artifacts-local"), local_runtime(), check=False)
