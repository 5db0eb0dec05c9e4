"""The worker runtime (``tusk-worker``): runs a shard of a job's datums. Pipeline images
contain this package; workers talk only to the repo service's REST API."""
