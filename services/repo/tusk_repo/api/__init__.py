"""HTTP routes of the repo service (thin: parse, call the service, shape the answer)."""
