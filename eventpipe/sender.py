"""``eventpipe send``: POST an NDJSON file to the API in batches."""

from __future__ import annotations

import gzip
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterator

import requests


@dataclass(frozen=True)
class SendSummary:
    events: int
    accepted: int
    rejected: int
    failed_requests: int
    seconds: float
    first_errors: tuple[str, ...]

    def describe(self) -> str:
        rate = self.events / self.seconds if self.seconds else 0.0
        text = (f"sent {self.events} events in {self.seconds:.2f}s ({rate:,.0f} events/s): "
                f"accepted {self.accepted}, rejected {self.rejected}, failed requests {self.failed_requests}")
        for error in self.first_errors:
            text += f"\n  {error}"
        return text


def _batches(path: str, size: int) -> Iterator[list[bytes]]:
    batch: list[bytes] = []
    with open(path, "rb") as handle:
        for line in handle:
            if line.strip():
                batch.append(line.rstrip(b"\n"))
                if len(batch) == size:
                    yield batch
                    batch = []
    if batch:
        yield batch


def post_batch(session: requests.Session, url: str, key: str, lines: list[bytes], use_gzip: bool,
               retries: int = 5) -> dict:
    body = b"\n".join(lines) + b"\n"
    headers = {"x-api-key": key, "Content-Type": "application/x-ndjson"}
    if use_gzip:
        body = gzip.compress(body, compresslevel=5)
        headers["Content-Encoding"] = "gzip"
    for attempt in range(retries):
        response = session.post(f"{url}/v1/events", data=body, headers=headers, timeout=60)
        if response.status_code == 503 and attempt + 1 < retries:
            time.sleep(float(response.headers.get("Retry-After", "1")))
            continue
        if response.status_code != 200:
            return {"accepted": 0, "rejected": 0, "failed": True,
                    "errors": [f"HTTP {response.status_code}: {response.text[:200]}"]}
        doc = response.json()
        return {"accepted": doc["accepted"], "rejected": doc["rejected"], "failed": False,
                "errors": [f"event {e['index']}: {e['error']}" for e in doc["errors"][:3]]}
    raise AssertionError("unreachable")


def send_file(path: str, url: str, key: str, batch_size: int = 500, use_gzip: bool = False,
              concurrency: int = 4, progress: bool = True) -> SendSummary:
    from tqdm import tqdm  # progress bar: the standard one

    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=concurrency, pool_maxsize=concurrency)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    totals = {"events": 0, "accepted": 0, "rejected": 0, "failed": 0}
    errors: list[str] = []
    started = time.perf_counter()
    with tqdm(unit="ev", disable=not progress, desc="sending") as bar, \
            ThreadPoolExecutor(max_workers=concurrency) as pool:
        pending = []
        for batch in _batches(path, batch_size):
            pending.append((len(batch), pool.submit(post_batch, session, url, key, batch, use_gzip)))
            if len(pending) >= concurrency * 2:
                _collect(pending.pop(0), totals, errors, bar)
        for item in pending:
            _collect(item, totals, errors, bar)
    return SendSummary(totals["events"], totals["accepted"], totals["rejected"], totals["failed"],
                       time.perf_counter() - started, tuple(errors[:5]))


def _collect(item, totals: dict, errors: list[str], bar) -> None:
    count, future = item
    result = future.result()
    totals["events"] += count
    totals["accepted"] += result["accepted"]
    totals["rejected"] += result["rejected"]
    totals["failed"] += int(result["failed"])
    errors.extend(result["errors"])
    bar.update(count)
