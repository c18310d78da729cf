"""Test helpers: processes of the real stack and Kafka clients that produce and wait for events."""
