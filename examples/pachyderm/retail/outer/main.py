"""Outer join: a store with its return, a store without one, or a return of an unknown store."""
# ruff: noqa: SIM112 - Pachyderm names these variables after the inputs, in lower case

import json
import os
from pathlib import Path

store_id = os.environ.get("PACH_DATUM_stores_JOIN_ON") or os.environ["PACH_DATUM_returns_JOIN_ON"]
store = json.loads(Path(os.environ["stores"]).read_text()) if "stores" in os.environ else None
returned = json.loads(Path(os.environ["returns"]).read_text()) if "returns" in os.environ else None
name = f"{store['address']['zipcode']}.txt" if store else f"unknown-{store_id}.txt"
text = f"Return at store: {store_id}\n{returned['amount']:.2f}\n" if returned else "no return\n"
Path("/pfs/out", name).write_text(text)
