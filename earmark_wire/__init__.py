"""The wire contract shared by the device and the cloud: topics, receipts, the signed clip
envelope and device public keys. Plain data and pure functions; no I/O."""
