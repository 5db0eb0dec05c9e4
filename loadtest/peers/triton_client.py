"""Triton's stock HTTP client against any OIP v2 server (run in the tritonclient virtualenv).

    python triton_client.py --url 127.0.0.1:PORT --model credit --body req.json --seconds 3

Sends the request in ``--body`` (OIP v2 JSON) through ``tritonclient.http``, unmodified, one at
a time for ``--seconds``; prints one JSON object: requests, req/s, p50/p99 in ms, and the first
output values (to compare servers).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import tritonclient.http as triton

DTYPES = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="host:port")
    parser.add_argument("--model", required=True)
    parser.add_argument("--body", required=True)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    with open(args.body) as f:
        request = json.load(f)
    client = triton.InferenceServerClient(url=args.url)
    if not client.is_model_ready(args.model):
        print(f"{args.model} is not ready at {args.url}", file=sys.stderr)
        return 1
    inputs = []
    for spec in request["inputs"]:
        tensor = triton.InferInput(spec["name"], spec["shape"], spec["datatype"])
        data = np.asarray(spec["data"], dtype=DTYPES[spec["datatype"]]).reshape(spec["shape"])
        tensor.set_data_from_numpy(data, binary_data=False)
        inputs.append(tensor)
    first = client.infer(args.model, inputs)
    output = first.get_response()["outputs"][0]
    latencies = []
    deadline = time.perf_counter() + args.seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        client.infer(args.model, inputs)
        latencies.append(time.perf_counter() - started)
    ms = np.array(latencies) * 1000
    json.dump(
        {
            "requests": len(ms),
            "rps": round(len(ms) / float(ms.sum() / 1000), 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 3),
            "p99_ms": round(float(np.percentile(ms, 99)), 3),
            "output": output["name"],
            "first_values": first.as_numpy(output["name"]).ravel()[:4].tolist(),
        },
        sys.stdout,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
