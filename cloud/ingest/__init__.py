"""Ingest: the checks every message goes through (`ingestor`), and the message sources that
feed them behind one `MessageSource` protocol (MQTT shared subscription, RabbitMQ quorum
queue), with the ingester's metrics."""

from earmark.cloud.ingest.ingestor import REJECTION_REASONS, Ingestor, Outcome
from earmark.cloud.ingest.source import MessageSource

__all__ = ["REJECTION_REASONS", "Ingestor", "MessageSource", "Outcome"]
