"""MQTT topics of wire contract v1, as pure build/parse functions."""

from __future__ import annotations

import re

from earmark.wire.errors import EarmarkError

PREFIX = "earmark/v1"
# A device id doubles as its broker username and as a topic level, so it must never hold
# MQTT wildcards or separators; the pattern is deliberately narrow.
DEVICE_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{2,62}$")


class TopicError(EarmarkError, ValueError):
    """A topic that is not one of ours, or a device id that cannot be a topic level."""


def check_device_id(device_id: str) -> str:
    if not isinstance(device_id, str) or not DEVICE_ID_PATTERN.fullmatch(device_id):
        raise TopicError(
            f"device id {device_id!r} must be 3-63 characters of a-z, 0-9 and '-', "
            "starting with a letter or digit"
        )
    return device_id


def clip_topic(device_id: str) -> str:
    return f"{PREFIX}/clips/{check_device_id(device_id)}"


def receipt_topic(device_id: str) -> str:
    return f"{PREFIX}/receipts/{check_device_id(device_id)}"


def status_topic(device_id: str) -> str:
    return f"{PREFIX}/status/{check_device_id(device_id)}"


def marks_topic(device_id: str) -> str:
    """The household's marks for this device (wire/marks.py): the cloud writes, it reads."""
    return f"{PREFIX}/marks/{check_device_id(device_id)}"


STATUS_PREFIX = f"{PREFIX}/status/"
STATUS_SUBSCRIPTION = f"{STATUS_PREFIX}+"  # every device's retained status (not shared: each reader needs all)


def shared_clip_subscription(group: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", group):
        raise TopicError(f"share group {group!r} must be 1-64 characters of A-Z, a-z, 0-9, _ and -")
    return f"$share/{group}/{PREFIX}/clips/+"


def _device_from(topic: str, kind: str) -> str:
    head = f"{PREFIX}/{kind}/"
    if not topic.startswith(head):
        raise TopicError(f"topic {topic!r} is not an {head}<device_id> topic")
    return check_device_id(topic[len(head):])


def device_from_clip_topic(topic: str) -> str:
    return _device_from(topic, "clips")


def device_from_receipt_topic(topic: str) -> str:
    return _device_from(topic, "receipts")


def device_from_status_topic(topic: str) -> str:
    return _device_from(topic, "status")
