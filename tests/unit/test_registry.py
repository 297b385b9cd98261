"""The registry on SQLite: identities are for life, and names that belong to services are not
for devices."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from earmark.cloud.broker.logins import INGESTER_USERNAME
from earmark.cloud.store import RegistryError, Store
from earmark.device.sync.identity import public_key_of


@pytest.mark.parametrize("device_id", [INGESTER_USERNAME, "earmark-ingester-2", "earmark-portal"])
def test_a_device_cannot_take_a_name_reserved_for_services(store: Store, device_id: str) -> None:
    owner = store.registry.add_owner("Mallory").owner_id
    with pytest.raises(RegistryError, match="reserved"):
        store.registry.add_device(owner, public_key_of(Ed25519PrivateKey.generate()), device_id)
    assert store.registry.devices(owner) == []


def test_there_is_no_way_to_move_a_device_to_another_owner(store: Store) -> None:
    assert not hasattr(store.registry, "rebind_device")
    owner = store.registry.add_owner("Ann").owner_id
    store.registry.add_device(owner, public_key_of(Ed25519PrivateKey.generate()), "kitchen-pi")
    [(bound_to, _, _)] = store.registry.bindings("kitchen-pi")
    assert store.registry.identity_owner(store.registry.bindings("kitchen-pi")) == bound_to == owner
