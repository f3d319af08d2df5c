"""Runs one Lambda handler the way the Python runtime does; the standard library only.

Started as ``python3.X -I -S -B lambda_bootstrap.py REQUEST.json`` (no site-packages,
no environment-driven paths, no byte code written: Lambda's /var/task is read-only),
it puts exactly the Lambda directories on ``sys.path``, imports the handler's module
(the "init" phase), invokes it with each event, and writes the results, timings and
the modules that were loaded to the response file named in the request.

Request: ``{"task": DIR, "opt": DIR, "runtime": DIR, "handler": "app.app", "function": NAME,
"timeout_s": 60, "events": [...], "response": FILE, "snapstart": false}``.

SnapStart (``"snapstart": true``): a stand-in of the runtime's ``snapshot_restore_py`` collects
the hooks app.py registers; after the init the before-snapshot hooks run (in reverse order of
registration, as Lambda runs them), then the process forks: the child plays a restored
environment (the memory image of the initialized process, in a new process), runs the
after-restore hooks (in order) and the invocations, and writes the response; the parent waits.
What a caller of a restored function waits for beyond Lambda's own restore is
``after_restore_ms`` + the first invocation.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback
import types
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


def install_snapshot_hooks() -> types.ModuleType:
    """The runtime's ``snapshot_restore_py`` (its two registration functions), collecting the hooks."""
    module = types.ModuleType("snapshot_restore_py")
    module.before, module.after = [], []

    def register_before_snapshot(func, *args, **kwargs):
        module.before.append((func, args, kwargs))
        return func

    def register_after_restore(func, *args, **kwargs):
        module.after.append((func, args, kwargs))
        return func

    module.register_before_snapshot, module.register_after_restore = register_before_snapshot, register_after_restore
    sys.modules[module.__name__] = module
    return module


def _run_hooks(hooks: list, response: dict, key: str) -> bool:
    began = time.perf_counter()
    try:
        for func, args, kwargs in hooks:
            func(*args, **kwargs)
    except BaseException as exc:  # noqa: BLE001 - a failed hook fails the init (or the restore), as on Lambda
        response.update(init_error={"type": type(exc).__name__, "message": f"{key}: {exc}",
                                    "traceback": traceback.format_exc()})
        return False
    finally:
        response[f"{key}_ms"] = (time.perf_counter() - began) * 1000
    return True


def snapshot_and_restore(hooks: types.ModuleType, response: dict) -> bool:
    """Before-snapshot hooks, then a fork whose child (returning True) is the restored environment
    and has run the after-restore hooks; the parent returns False once the child has finished."""
    if not _run_hooks(list(reversed(hooks.before)), response, "before_snapshot"):
        return True
    response["hooks"] = {"before": len(hooks.before), "after": len(hooks.after)}
    sys.stdout.flush()
    sys.stderr.flush()  # else both processes would write what is buffered
    pid = os.fork()
    if pid:
        os.waitpid(pid, 0)
        return False
    _run_hooks(list(hooks.after), response, "after_restore")
    return True


def main(request_path: str) -> int:
    with open(request_path) as handle:
        request = json.load(handle)
    sys.path[:] = lambda_path(request["task"], request["opt"], request["runtime"])
    response: dict = {"sys_path": list(sys.path), "interpreter": sys.executable, "stdlib_prefix": sys.base_prefix,
                      "startup_ms": (time.perf_counter() - STARTED) * 1000}
    module_name, _, attribute = request["handler"].rpartition(".")
    hooks = install_snapshot_hooks() if request.get("snapstart") else None
    began = time.perf_counter()
    try:
        handler = getattr(importlib.import_module(module_name), attribute)
    except BaseException as exc:  # noqa: BLE001 - an init error is the result
        response.update(init_error={"type": type(exc).__name__, "message": str(exc),
                                    "traceback": traceback.format_exc()})
        handler = None
    response["init_ms"] = (time.perf_counter() - began) * 1000
    response["modules_after_init"] = _modules()
    if hooks is not None and handler is not None:
        if not snapshot_and_restore(hooks, response):
            return 0  # the snapshot's original: the restored child answered
        if "init_error" in response:
            handler = None
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
