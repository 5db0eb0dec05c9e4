"""What the service does, apart from HTTP and events: model specs, tensors, engines, batching,
the registry of loaded versions and their lineage."""
