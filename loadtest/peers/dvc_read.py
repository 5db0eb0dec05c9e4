"""Small reads through DVC's Python API (run in the DVC virtualenv).

    python dvc_read.py --repo CLONE --paths paths.txt

Opens the repo once with ``dvc.api.DVCFileSystem`` (the API that keeps the repo open between
reads, DVC's fastest path) and reads each listed file in turn; its contents come from the S3
remote the first time (the clone's cache starts empty). Prints one JSON object: the latency of
each read in ms and the bytes read.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from dvc.api import DVCFileSystem


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", required=True)
    parser.add_argument("--paths", required=True, help="a file of paths, one a line")
    args = parser.parse_args()
    with open(args.paths) as f:
        paths = [line.strip() for line in f if line.strip()]
    fs = DVCFileSystem(args.repo)
    latencies = []
    total = 0
    for path in paths:
        started = time.perf_counter()
        total += len(fs.read_bytes(path))
        latencies.append((time.perf_counter() - started) * 1000)
    json.dump({"latencies_ms": latencies, "bytes": total}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
