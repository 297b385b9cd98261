"""The broker's side of identity: per-device logins with their password and ACL files, the
generated Mosquitto config, and the private CA for TLS."""

from earmark.cloud.broker.config import BrokerSetup, write_broker_config
from earmark.cloud.broker.logins import INGESTER_USERNAME, BrokerError, create_login, revoke_login

__all__ = ["INGESTER_USERNAME", "BrokerError", "BrokerSetup", "create_login", "revoke_login",
           "write_broker_config"]
