"""Issue 36, the portal's half: the owner marks a false wake "Not meant for me" on the portal
(Playwright, a virtual passkey) and the device that made the recording, running, learns from
it through the real Mosquitto with the generated ACL: its next pass over the same audio does
not wake, and the wake word still does. The mark carries clip ids only; another device of the
household never receives it, cannot read the device's marks and cannot write any; a device
that was away gets the latest when it comes back; a malformed mark teaches nothing; a broker
that is down keeps the mark pending until it is back."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from earmark.cloud.broker import logins as broker
from earmark.cloud.broker.control import login_client
from earmark.cloud.broker.marks import send_marks
from earmark.device.assembly import AssembledDevice, assemble
from earmark.device.audio.source import FRAME_SAMPLES, WavFileSource
from earmark.device.controls import Controls
from earmark.device.settings import DeviceSettings, GpioSettings, load_settings
from earmark.device.sync.identity import load_or_create_key, public_key_of
from earmark.wire.marks import MarksMessage
from earmark.wire.topics import marks_topic
from tests.conftest import HOUSEHOLD_RECIPIENT
from tests.integration.test_portal import CHROMIUM, passkey_holder, register, rows
from tests.support.portalserver import served
from tests.support.securecloud import Client, SecureCloud
from tests.support.speech import Scene, read_wav
from tests.support.waiting import wait_until

playwright = pytest.importorskip("playwright.sync_api")
PINS = GpioSettings(mute_pin=5, talk_pin=17, led_red_pin=12, led_green_pin=13, led_blue_pin=16, mock=True)


def paired(cloud: SecureCloud, data_dir: Path, owner_id: str, device_id: str) -> DeviceSettings:
    """A real device (its own key in its data dir) registered and given a broker login."""
    s = load_settings(None, data_dir, {"device_id": device_id, "owner_id": owner_id,
                                       "recipients": (HOUSEHOLD_RECIPIENT,)})
    key, _ = load_or_create_key(s.key_path)
    cloud.store.registry.add_device(owner_id, public_key_of(key), device_id)
    password = broker.create_login(cloud.store, device_id, "device")
    cloud.sync()
    return replace(s, gpio=PINS, broker=cloud.device_broker(device_id, password))


def wakes(device: AssembledDevice, wav: Path) -> int:
    """Detections of the running device's own detector over the recording (its next pass)."""
    audio = read_wav(wav)
    found = 0
    for start in range(0, len(audio) - FRAME_SAMPLES + 1, FRAME_SAMPLES):
        found += device.loop.detector.process(audio[start:start + FRAME_SAMPLES]) is not None
    return found


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (deploy/setup.sh installs it)")
def test_a_mark_on_the_portal_reaches_only_the_device_that_made_the_clip_and_it_stops_waking_on_it(
        cloud: SecureCloud, data_dir: Path, tmp_path: Path, speech: Callable[..., np.ndarray],
        caplog: pytest.LogCaptureFixture) -> None:
    store = cloud.store
    owner = store.registry.add_owner("Alexis").owner_id
    store.registry.set_recipient(owner, HOUSEHOLD_RECIPIENT)
    s = paired(cloud, data_dir, owner, "den-pi")
    kitchen_password = broker.create_login(store, "kitchen-pi", "device")
    store.registry.add_device(owner, public_key_of(load_or_create_key(tmp_path / "kitchen.key")[0]), "kitchen-pi")
    cloud.sync()
    name = (Scene().pause(1).speak(speech("Alexis, dinner is ready", "en-gb+f3", 160)).pause(0.2)
            .speak(speech("we are eating in the garden")).pause(2).write(tmp_path / "alexis.wav"))
    word = Scene().pause(1).speak(speech("alexa, what time is it")).pause(2).write(tmp_path / "alexa.wav")

    # The kitchen device, of the same household, listens where it may and where it may not.
    kitchen = Client(cloud, "kitchen-pi", kitchen_password)
    assert kitchen.wait()
    kitchen.subscribe(marks_topic("kitchen-pi"))
    kitchen.subscribe(marks_topic("den-pi"))
    kitchen.subscribe("earmark/v1/marks/#")

    device = assemble(s, WavFileSource(name), Controls(s.gpio))
    assert device.publisher is not None
    try:
        device.run()  # the first pass: the name wakes it, the clip goes to the cloud
        assert device.wait_drained(30)
        [clip_id] = cloud.clips(owner)
        assert (data_dir / "wake-features" / f"{clip_id}.npz").exists()
        assert wakes(device, name) == 1  # the premise, on the running device's own detector

        with served(store) as (base, _), playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = passkey_holder(browser)
            register(page, base, f"{base}/invite/{store.portal.invite(owner, 900)}")
            assert rows(page) == [clip_id]
            page.click(f"#clip-{clip_id} form.mark button")
            page.wait_for_selector(f"#clip-{clip_id}.marked")
            page.screenshot(path=str(tmp_path / "marked.png"), full_page=True)
            browser.close()

        wait_until(lambda: device.loop.detector.learnt.marks == {"alexa": 1}, 30, "the device to learn the mark")
        assert wakes(device, name) == 0  # the running device's next pass: not woken
        assert wakes(device, word) == 1  # the wake word still wakes it
        assert store.accounts.marks_pending() == []

        # Another device cannot write marks: its forged message is refused by the ACL.
        forged = kitchen.client.publish(marks_topic("den-pi"), MarksMessage((), ()).encode(), qos=1, retain=True)
        forged.wait_for_publish(5)
        time.sleep(1)
        assert device.loop.detector.learnt.marks == {"alexa": 1}

        # A malformed message (from the cloud's own login) teaches nothing and is one line.
        folder = store.accounts.broker_dir()
        assert folder is not None
        cloud_side = login_client(folder, cloud.setup.url, broker.MARKS_USERNAME,
                                  (folder / broker.MARKS_PASSWORD_FILE).read_text().strip())
        cloud_side.connect("127.0.0.1", cloud.port)
        cloud_side.loop_start()
        with caplog.at_level(logging.WARNING, logger="earmark.device.sync.publisher"):
            cloud_side.publish(marks_topic("den-pi"), b'{"v":1,"not_meant":["../etc"],"deleted":[]}',
                               qos=1).wait_for_publish(5)
            wait_until(lambda: "malformed marks message" in caplog.text, 10, "the device to refuse it")
        cloud_side.loop_stop()
        cloud_side.disconnect()
        assert device.loop.detector.learnt.marks == {"alexa": 1}
    finally:
        device.close()

    assert kitchen.messages == []  # never the den's marks, though it asked for them
    kitchen.close()

    # Away: the mark taken off while the device is off; it comes back, gets the latest, forgets.
    assert store.clips.mark(owner, clip_id, None)
    assert send_marks(store, ["den-pi"]) == []
    again = assemble(s, WavFileSource(name), Controls(s.gpio))
    try:
        assert again.publisher is not None
        again.publisher.start()
        wait_until(lambda: not again.loop.detector.learnt.marks, 30, "the device to forget the mark taken off")
        assert wakes(again, name) == 1

        # The broker down: the mark is kept pending, and sent when it is back.
        cloud.stop_broker()
        assert store.clips.mark(owner, clip_id, "not_meant")
        assert send_marks(store, ["den-pi"], timeout_s=2) == ["den-pi"]
        assert store.accounts.marks_pending() == ["den-pi"]
        cloud.start_broker()
        assert send_marks(store, []) == []  # the next send takes the pending ones too
        assert store.accounts.marks_pending() == []
        wait_until(lambda: again.loop.detector.learnt.marks == {"alexa": 1}, 60, "the mark after the outage")
        assert wakes(again, name) == 0
    finally:
        again.close()
