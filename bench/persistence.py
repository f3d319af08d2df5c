"""Save and restore of the local stack's data folder (eventpipe/local/persistence.py) on a moto server.

    .venv/bin/python bench/persistence.py --objects 1000 --size 100000

Puts N objects of SIZE bytes into moto's lake bucket, then times a first save (every object
fetched), a second save with nothing changed (the ETag check only) and a restore into a
reset moto.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

for _name, _value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                      ("AWS_DEFAULT_REGION", "us-east-1")):
    os.environ.setdefault(_name, _value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--size", type=int, default=100_000)
    args = parser.parse_args()
    logging.disable(logging.INFO)
    from moto.server import ThreadedMotoServer

    from eventpipe.local.stack import free_port
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    os.environ["EVENTPIPE_AWS_ENDPOINT_URL"] = url
    from chalicelib.runtime.container import Container
    from chalicelib.runtime.settings import Settings
    from eventpipe.local.bootstrap import bootstrap
    from eventpipe.local.persistence import DataFolder

    container = Container(Settings.from_env())
    bootstrap(container.clients, shards=2)
    s = container.settings
    body = os.urandom(args.size)
    for i in range(args.objects):
        container.clients.s3.put_object(Bucket=s.bucket, Key=f"events/app_id=demo/dt=2026-12-01/hour=00/f{i}.parquet",
                                        Body=body[:-8] + i.to_bytes(8, "big"))
    with tempfile.TemporaryDirectory() as folder:
        data = DataFolder(folder, container.clients.s3, container.clients.dynamodb, s.state_table, s.apps_table)
        print("first save:    ", data.save().describe())
        print("unchanged save:", data.save().describe())
        requests.post(f"{url}/moto-api/reset", timeout=30)
        container = Container(Settings.from_env())
        data = DataFolder(folder, container.clients.s3, container.clients.dynamodb, s.state_table, s.apps_table)
        print("restore:       ", data.restore(data.load(), s.region).describe())
    server.stop()


if __name__ == "__main__":
    main()
