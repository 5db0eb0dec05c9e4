"""Models added at runtime (``tusk model add``), kept in a JSON file so that a restarted
service serves them again. Models from TUSK_MODELS / TUSK_MODELS_FILE are not kept here:
the settings stay the place to change those."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from tusk.errors import InvalidArgument
from tusk_inference.domain.specs import BATCHING_MODES, Batching, ModelSpec, parse_source


class RuntimeModels:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> list[ModelSpec]:
        try:
            document = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as e:
            raise InvalidArgument(
                f"cannot read the runtime models file {self.path} ({e}); fix or delete it, "
                "or set TUSK_INFERENCE_MODELS_STATE to another file"
            ) from None
        specs = []
        for name, entry in dict(document.get("models", {})).items():
            batching = entry.get("batching")
            if batching is not None and batching not in BATCHING_MODES:
                raise InvalidArgument(f"{self.path}: model {name!r} has batching {batching!r}")
            specs.append(parse_source(str(name), str(entry["source"]), batching))
        return specs

    def save(self, specs: list[ModelSpec]) -> None:
        document = {
            "models": {
                s.name: {"source": s.source, **({"batching": s.batching} if s.batching else {})}
                for s in specs
            }
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Written aside and renamed: a crash mid-write leaves the old list, never half a one.
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".models-")
        try:
            with os.fdopen(fd, "w") as out:
                json.dump(document, out, indent=2)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def same_source(spec: ModelSpec, source: str, batching: Batching | None) -> bool:
    return spec.source == parse_source(spec.name, source).source and spec.batching == batching
