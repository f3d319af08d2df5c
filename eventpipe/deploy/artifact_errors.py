"""Typed errors of the artifact builder; every one stops packaging (non-zero exit)."""

from __future__ import annotations


class PackagingError(Exception):
    """Packaging cannot produce correct artifacts; the message says why."""


class MissingWheelError(PackagingError):
    """A pinned distribution has no wheel for the target runtime (never silently dropped).

    Attributes:
        package: The (first) requirement pip could not satisfy (``name==version``).
        packages: All of them.
        runtime: The Lambda runtime the wheels were resolved for.
    """

    def __init__(self, package: str, runtime: str, detail: str = "", packages: tuple[str, ...] = ()) -> None:
        self.package = package
        self.packages = packages or (package,)
        self.runtime = runtime
        super().__init__(f"no wheel of {', '.join(self.packages)} for {runtime} (manylinux, its ABI): "
                         f"packaging stopped" + (f"\n{detail}" if detail else ""))


class PinError(PackagingError):
    """What was resolved differs from the pins the tests use (constraints.txt)."""


class ConfigError(PackagingError):
    """artifact_config.PACKAGE does not match what was resolved (a stale or wrong entry)."""


class SizeError(PackagingError):
    """An artifact exceeds a Lambda limit or our budget."""


class ToolMissingError(PackagingError):
    """A build tool (``strip``) or the target interpreter is not installed."""
