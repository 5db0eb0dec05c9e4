"""Inner join: one store and one of its purchases per datum -> /pfs/out/<zipcode>.txt."""
# ruff: noqa: SIM112 - Pachyderm names these variables after the inputs, in lower case

import json
import os
from pathlib import Path

store_id = os.environ["PACH_DATUM_stores_JOIN_ON"]
store = json.loads(Path(os.environ["stores"]).read_text())
purchase = json.loads(Path(os.environ["purchases"]).read_text())
zipcode = store["address"]["zipcode"]
Path("/pfs/out", f"{zipcode}.txt").write_text(
    f"Purchase at store: {store_id} - {store['name']}\n{purchase['amount']:.2f}\n"
)
print(f"store {store_id} ({zipcode}): purchase of {purchase['amount']:.2f}")
