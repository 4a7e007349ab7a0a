"""Sync to the central platform: outbox, aggregates, MQTT (never imports agent.vision)."""
