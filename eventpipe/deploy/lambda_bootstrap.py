"""Runs one Lambda handler the way the Python runtime does; the standard library only.

Started as ``python3.X -I -S -B lambda_bootstrap.py REQUEST.json`` (no site-packages,
no environment-driven paths, no byte code written: Lambda's /var/task is read-only),
it puts exactly the Lambda directories on ``sys.path``, imports the handler's module
(the "init" phase), invokes it with each event, and writes the results, timings and
the modules that were loaded to the response file named in the request.

Request: ``{"task": DIR, "opt": DIR, "runtime": DIR, "handler": "app.app", "function": NAME,
"timeout_s": 60, "events": [...], "response": FILE}``.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
import traceback
import uuid

STARTED = time.perf_counter()


class LambdaContext:
    """The attributes and method of the runtime's context object that handlers use."""

    def __init__(self, function: str, timeout_s: float) -> None:
        self.function_name = function
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function}"
        self.memory_limit_in_mb = "1024"
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function}"
        self.log_stream_name = "sandbox"
        self.identity = None
        self.client_context = None
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def lambda_path(task: str, opt: str, runtime: str) -> list[str]:
    """Lambda's order: the function, the layers' two locations, the runtime's boto3, then the stdlib."""
    version = "python%d.%d" % sys.version_info[:2]
    stdlib = [p for p in sys.path if p and "site-packages" not in p and "dist-packages" not in p]
    return [task, f"{opt}/python/lib/{version}/site-packages", f"{opt}/python", runtime, *stdlib]


def _modules() -> list[str]:
    return sorted(name for name in sys.modules if "." not in name)


def _own_modules() -> list[str]:
    return sorted(name for name in sys.modules if name in ("app", "chalicelib") or name.startswith("chalicelib."))


def main(request_path: str) -> int:
    with open(request_path) as handle:
        request = json.load(handle)
    sys.path[:] = lambda_path(request["task"], request["opt"], request["runtime"])
    response: dict = {"sys_path": list(sys.path), "interpreter": sys.executable, "stdlib_prefix": sys.base_prefix,
                      "startup_ms": (time.perf_counter() - STARTED) * 1000}
    module_name, _, attribute = request["handler"].rpartition(".")
    began = time.perf_counter()
    try:
        handler = getattr(importlib.import_module(module_name), attribute)
    except BaseException as exc:  # noqa: BLE001 - an init error is the result
        response.update(init_error={"type": type(exc).__name__, "message": str(exc),
                                    "traceback": traceback.format_exc()})
        handler = None
    response["init_ms"] = (time.perf_counter() - began) * 1000
    response["modules_after_init"] = _modules()
    results = []
    for event in request["events"] if handler else ():
        began = time.perf_counter()
        context = LambdaContext(request["function"], request.get("timeout_s", 60))
        try:
            outcome = {"result": handler(event, context)}
        except BaseException as exc:  # noqa: BLE001 - the runtime reports it as a function error
            outcome = {"error": {"type": type(exc).__name__, "message": str(exc),
                                 "traceback": traceback.format_exc()}}
        outcome["duration_ms"] = (time.perf_counter() - began) * 1000
        outcome["modules"] = _modules()
        results.append(outcome)
    response["invocations"] = results
    response["own_modules"] = _own_modules()
    with open(request["response"], "w") as handle:
        json.dump(response, handle, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
