"""Buttons and pins on gpiozero's MockFactory: a bouncing contact is one press, the LED
power pin is driven, and pins that clash with I2S audio are called out."""

from __future__ import annotations

import logging
import time

import pytest

from earmark.device.controls import DEBOUNCE_S, Controls
from earmark.device.settings import GpioSettings


def chatter(pin: object, edges: int) -> None:
    """A contact closing with bounce: it makes and breaks `edges` times within a millisecond."""
    for _ in range(edges):
        pin.drive_low()  # type: ignore[attr-defined]
        pin.drive_high()  # type: ignore[attr-defined]
    pin.drive_low()  # type: ignore[attr-defined]


def settle() -> None:
    time.sleep(3 * DEBOUNCE_S)


@pytest.mark.parametrize("bounces", [0, 1, 2, 5])
def test_a_bouncing_mute_button_press_mutes_exactly_once(bounces: int) -> None:
    # Issue 12 case 6: without debounce each bounce flipped mute, so whether a press muted
    # depended on how many times the contact chattered.
    controls = Controls(GpioSettings(mute_pin=27, mock=True))
    pin = controls.mute.button.pin  # type: ignore[union-attr]
    chatter(pin, bounces)
    settle()
    pin.drive_high()  # let go, with a bounce on release too
    pin.drive_low()
    pin.drive_high()
    settle()
    assert controls.mute.muted
    chatter(pin, bounces)  # a second press unmutes
    settle()
    pin.drive_high()
    settle()
    assert not controls.mute.muted
    controls.close()


def test_a_mute_switch_follows_its_settled_position() -> None:
    controls = Controls(GpioSettings(mute_pin=27, mute_kind="switch", mock=True))
    pin = controls.mute.button.pin  # type: ignore[union-attr]
    chatter(pin, 3)
    settle()
    assert controls.mute.muted
    pin.drive_high()
    pin.drive_low()  # a glitch shorter than the debounce time changes nothing
    settle()
    assert controls.mute.muted
    pin.drive_high()
    settle()
    assert not controls.mute.muted
    controls.close()


def test_a_talk_press_counts_once_however_much_it_bounces() -> None:
    controls = Controls(GpioSettings(talk_pin=17, mock=True))
    chatter(controls.talk.button.pin, 4)  # type: ignore[union-attr]
    settle()
    assert controls.talk.take_press() and not controls.talk.take_press()
    controls.close()


def test_the_led_power_pin_is_on_while_running_and_off_after() -> None:
    controls = Controls(GpioSettings(light="rgb", led_power_pin=5, mock=True))
    power = controls.pin_factory.pin(5)
    assert power.state
    controls.close()
    assert not power.state


def test_pins_on_the_i2s_bus_are_called_out(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        Controls(GpioSettings(led_red_pin=12, led_green_pin=13, led_blue_pin=19, mock=True)).close()
    assert "[19]" in caplog.text and "I2S" in caplog.text
