"""Kafka plumbing shared by every service: clients, topics, codec, the exactly-once loop."""
