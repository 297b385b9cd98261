"""The cloud side: the store (`store/`, the only layer with SQL), ingest (`ingest/`: the
checks and the message sources), what an owner is owed (`owner/`: export, verify-export,
erasure, retention), the broker's identities and config (`broker/`), and `earmark-cloud`
(`cli/`). `settings` is the config."""

from earmark.cloud.settings import CloudSettings, load_settings
from earmark.cloud.store import Store

__all__ = ["CloudSettings", "Store", "load_settings"]
