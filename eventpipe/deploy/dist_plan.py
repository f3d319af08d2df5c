"""Which resolved distribution goes where: the code zip, a layer, or nowhere (and why)."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

from packaging.utils import canonicalize_name

from eventpipe.deploy.artifact_config import PackageSpec
from eventpipe.deploy.artifact_errors import ConfigError
from eventpipe.deploy.wheels import Distribution

CODE = "code"


@dataclass(frozen=True)
class DistributionPlan:
    """``placement``: distribution -> ``"code"`` or a layer name; ``left_out``: distribution -> reason."""

    placement: Mapping[str, str]
    left_out: Mapping[str, str]

    def members(self, where: str) -> tuple[str, ...]:
        return tuple(sorted(name for name, place in self.placement.items() if place == where))


def reachable(roots: list[str], distributions: Mapping[str, Distribution], blocked: set[str]) -> set[str]:
    """The distributions ``roots`` need, walking requirements but never through ``blocked`` ones."""
    seen: set[str] = set()
    todo = [r for r in roots if r not in blocked]
    while todo:
        name = todo.pop()
        if name in seen or name not in distributions:
            continue
        seen.add(name)
        todo += [r for r in distributions[name].requires if r not in blocked]
    return seen


def plan_distributions(distributions: Mapping[str, Distribution], roots: list[str],
                       package: PackageSpec) -> DistributionPlan:
    """Places every resolved distribution; anything only an excluded one needs is left out too.

    Raises:
        ConfigError: The config names a distribution that was not resolved (a stale entry),
            or puts one into two layers.
    """
    excluded = {canonicalize_name(n): reason for n, reason in package.excluded_distributions.items()}
    stale = sorted(set(excluded) - set(distributions))
    layer_of: dict[str, str] = {}
    for layer in package.layers:
        for dist in map(canonicalize_name, layer.distributions):
            if dist in layer_of:
                raise ConfigError(f"{dist} is in layers {layer_of[dist]} and {layer.name}")
            layer_of[dist] = layer.name
    stale += sorted(d for d in layer_of if d not in distributions)
    if stale:
        raise ConfigError("artifact_config.PACKAGE names distributions that were not resolved: " + ", ".join(stale))
    needed = reachable([canonicalize_name(r) for r in roots], distributions, set(excluded))
    placement = {name: layer_of.get(name, CODE) for name in sorted(needed)}
    left_out = dict(excluded)
    for name in sorted(set(distributions) - needed - set(excluded)):
        left_out[name] = "needed only by an excluded distribution"
    for name, layer in layer_of.items():
        if name not in needed:
            raise ConfigError(f"layer {layer} holds {name}, which requirements.txt does not need")
    return DistributionPlan(MappingProxyType(placement), MappingProxyType(left_out))
