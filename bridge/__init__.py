"""Everything Kafka: topic catalog, codec, consumer bridge, producer, outbox relay, dead letters."""
