"""The inference service: ONNX models from the repos, served over the Open Inference Protocol
v2 and swapped for each new version that training commits."""
