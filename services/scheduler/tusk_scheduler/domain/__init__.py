"""How jobs are executed: planning datums, running shards, collecting results, finishing."""
