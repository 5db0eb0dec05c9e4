"""Events: CloudEvents envelopes, typed payloads, the transactional outbox and the buses."""
