"""HTTP API and Kafka consumers of the run executor."""
