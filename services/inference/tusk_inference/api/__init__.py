"""HTTP routes of the inference service: the Open Inference Protocol v2, plus metrics."""
