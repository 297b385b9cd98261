"""The owner's devices, online or not since when (the ingester records their status topics),
and revoking one: the same revocation as `earmark-cloud device revoke` (login removed,
broker reloaded, the connection dropped)."""

from __future__ import annotations

import logging

from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from earmark.cloud.broker.control import BrokerNotConfirmed, revoke_device
from earmark.cloud.portal.guard import Call, OwnerRoute
from earmark.cloud.portal.state import PortalState

log = logging.getLogger(__name__)


def devices(call: Call) -> Response:
    store, owner_id = call.state.store, call.owner_id
    return call.page("devices.html", devices=store.registry.devices(owner_id),
                     presence=store.presence.of_owner(owner_id))


def revoke(call: Call) -> Response:
    device_id = call.param("device_id")
    store = call.state.store
    if device_id not in {d.device_id for d in store.registry.devices(call.owner_id)}:
        return call.not_found("device", device_id)
    try:
        revoke_device(store, device_id, call.state.broker_reload)  # confirming waits on the broker (up to 10 s)
    except BrokerNotConfirmed as exc:
        log.warning("device %s revoked from the portal; the broker is not in step yet: %s", device_id, exc)
        return call.page("message.html", title="Your device is revoked", signed_in=True, back="/devices",
                         back_label="Back to your devices",
                         text="It can no longer send recordings for you. The broker has not confirmed it yet, "
                              "so a connection it has now may last until it does; your operator has been told.")
    return RedirectResponse("/devices", 303)


def routes(state: PortalState) -> list[Route]:
    return [
        OwnerRoute(state, "/devices", devices),
        OwnerRoute(state, "/devices/{device_id}/revoke", revoke, ("POST",)),
    ]
