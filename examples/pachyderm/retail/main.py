"""Group by store: the store's purchases minus its returns -> /pfs/out/STOREID<n>.txt."""

import json
import os
from pathlib import Path


def total(input_name: str) -> float:
    folder = Path("/pfs", input_name)
    files = folder.glob("*.txt") if folder.is_dir() else []
    return sum(json.loads(f.read_text())["amount"] for f in files)


# Every input of the group has the datum's key; a store may have no file of its own.
store_id = next(
    v for k, v in os.environ.items() if k.startswith("PACH_DATUM_") and k.endswith("_GROUP_BY")
)
revenue = total("purchases") - total("returns")
Path("/pfs/out", f"STOREID{store_id}.txt").write_text(f"{revenue:.2f}\n")
