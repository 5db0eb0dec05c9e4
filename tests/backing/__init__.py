"""Real backing services (PostgreSQL, S3, Kafka, ...) started by the test suite itself."""
