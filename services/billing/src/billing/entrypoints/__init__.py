"""HTTP routes and Kafka consumers of billing."""
