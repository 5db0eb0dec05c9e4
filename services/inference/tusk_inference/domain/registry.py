"""The loaded versions of each model, and which one each request gets.

Concurrency: everything here runs on the event loop, and a swap is one assignment — a request
that resolved its ``Version`` keeps it (and so its session) until it is answered, whatever is
installed meanwhile. Evicted versions are only dropped from the index; their memory goes when
the last request holding them ends.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime

from tusk.errors import NotFound, Unavailable
from tusk_inference.domain.lineage import Lineage
from tusk_inference.domain.runner import Runner
from tusk_inference.domain.specs import ModelSpec

MIN_PREFIX = 8  # a pinned version may be a commit id's prefix of at least this many digits


@dataclass(frozen=True, eq=False)
class Version:
    spec: ModelSpec
    commit: str
    runner: Runner
    lineage: Lineage
    loaded_at: datetime
    head: str = field(init=False)  # the response's first members, rendered once

    def __post_init__(self) -> None:
        head = (
            f'"model_name":{json.dumps(self.spec.name)},"model_version":{json.dumps(self.commit)},'
            f'"parameters":{json.dumps(self.lineage.parameters(), separators=(",", ":"))}'
        )
        object.__setattr__(self, "head", head)


@dataclass
class LoadFailure:
    commit: str
    error: str
    at: datetime


class Slot:
    """One configured model: its versions (least recently used first) and its latest."""

    def __init__(self, spec: ModelSpec, max_versions: int) -> None:
        self.spec = spec
        self.max_versions = max_versions
        self.latest: Version | None = None
        self.versions: OrderedDict[str, Version] = OrderedDict()
        self.last_failure: LoadFailure | None = None
        self.loading: str | None = None
        # The branch head has been read at least once (or the first load is queued): until
        # then this replica cannot tell whether the model exists.
        self.checked = False
        self.queued: str | None = None

    @property
    def settled(self) -> bool:
        """Whether this replica has done what it can for the model: it serves a version, or
        it read the branch and has nothing to load, or loading failed. A replica whose models
        are all settled can take traffic: the others cannot serve what it lacks either."""
        if self.latest is not None:
            return True
        return self.checked and self.loading is None and self.queued is None

    @property
    def name(self) -> str:
        return self.spec.name

    def resolve(self, version: str | None = None) -> Version:
        if version is None:
            if self.latest is None:
                raise Unavailable(self.not_loaded_reason())
            return self.latest
        found = self.versions.get(version)
        if found is None:
            found = self._by_prefix(version)
        if found is not self.latest:
            self.versions.move_to_end(found.commit)
        return found

    def _by_prefix(self, version: str) -> Version:
        matches = [
            v
            for commit, v in self.versions.items()
            if len(version) >= MIN_PREFIX and commit.startswith(version)
        ]
        if len(matches) == 1:
            return matches[0]
        loaded = ", ".join(reversed(self.versions)) or "none"
        raise NotFound(
            f"version {version!r} of model {self.name!r} is not loaded (loaded: {loaded}); "
            f"the latest {self.max_versions} versions used stay loaded "
            "(TUSK_INFERENCE_MAX_VERSIONS)"
        )

    def listed(self) -> list[str]:
        """The loaded versions: the latest, then the others, most recently used first."""
        if self.latest is None:
            return list(reversed(self.versions))
        latest = self.latest.commit
        return [latest, *(c for c in reversed(self.versions) if c != latest)]

    def has(self, commit: str) -> bool:
        return commit in self.versions

    def install(self, version: Version) -> list[Version]:
        """Serve ``version`` by default from now on; the versions evicted to make room.

        The version it replaces counts as used now (it served until now), so it outlives
        older ones that no request has pinned since."""
        if self.latest is not None and self.latest.commit in self.versions:
            self.versions.move_to_end(self.latest.commit)
        self.versions[version.commit] = version
        self.versions.move_to_end(version.commit)
        self.latest = version
        evicted = []
        while len(self.versions) > self.max_versions:
            _, old = self.versions.popitem(last=False)
            evicted.append(old)
        return evicted

    def runner_for(self, content_hash: str) -> Runner | None:
        """A loaded engine of the same model file, to share instead of loading it again."""
        for version in self.versions.values():
            if version.runner.engine.content_hash == content_hash:
                return version.runner
        return None

    def not_loaded_reason(self) -> str:
        text = f"model {self.name!r} has no version loaded yet ({self.spec.source})"
        if self.loading:
            text += f"; loading commit {self.loading}"
        if self.last_failure:
            text += (
                f"; the last load failed (commit {self.last_failure.commit}): "
                f"{self.last_failure.error}"
            )
        return text


class Registry:
    def __init__(self, specs: tuple[ModelSpec, ...], max_versions: int) -> None:
        self.slots = {spec.name: Slot(spec, max_versions) for spec in specs}

    def slot(self, name: str) -> Slot:
        slot = self.slots.get(name)
        if slot is None:
            known = ", ".join(repr(n) for n in self.slots) or "none"
            raise NotFound(f"unknown model {name!r} (served: {known})")
        return slot

    def resolve(self, name: str, version: str | None = None) -> Version:
        return self.slot(name).resolve(version)

    @property
    def ready(self) -> bool:
        """Every configured model serves a version (OIP's server readiness)."""
        return all(slot.latest is not None for slot in self.slots.values())

    @property
    def settled(self) -> bool:
        """Every model is settled (see `Slot.settled`): the replica's readiness for a Service."""
        return all(slot.settled for slot in self.slots.values())

    def unsettled_reason(self) -> str:
        return "; ".join(
            slot.not_loaded_reason()
            if slot.checked
            else f"model {slot.name!r}: its branch has not been read yet ({slot.spec.source})"
            for slot in self.slots.values()
            if not slot.settled
        )

    def not_ready_reason(self) -> str:
        return "; ".join(
            slot.not_loaded_reason() for slot in self.slots.values() if slot.latest is None
        )
