import pytest

from eventpipe.local.stack import Stack, StackConfig, free_port
from tests.conftest import ROOT


@pytest.fixture(scope="package")
def stack(tmp_path_factory):
    tap_file = tmp_path_factory.mktemp("tap") / "tap.ndjson"
    config = StackConfig(moto_port=free_port(), http_port=free_port(), search_port=free_port(), project_dir=str(ROOT), quiet=True,
                         extra_env={"EVENTPIPE_TAP_FILE": str(tap_file)})
    with Stack(config) as running:
        running.tap_file = tap_file
        yield running
