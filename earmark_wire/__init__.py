"""The contract shared by the device and the cloud: topics, receipts, the signed clip
envelope, device public keys and pairing bundles (plain data and pure functions), plus the
MQTT client set-up both sides use (transport.py)."""
