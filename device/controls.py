"""Buttons and the status light, through gpiozero. The pin factory is the one seam: the
real one on a Pi, gpiozero's MockFactory with `--mock-gpio` and in tests.

Muting is not a flag the audio loop ignores frames by: the loop closes the audio stream
while `MuteControl.muted` is set and reads nothing until it clears.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable
from typing import Any

from earmark.device.settings import GpioSettings

log = logging.getLogger(__name__)


def make_pin_factory(settings: GpioSettings) -> Any:
    """None lets gpiozero pick the Pi's own factory (lgpio on Bookworm)."""
    if settings.mock:
        from gpiozero.pins.mock import MockFactory, MockPWMPin

        return MockFactory(pin_class=MockPWMPin)
    return None


DEBOUNCE_S = 0.05  # a contact must hold still this long before a press or release counts
I2S_PINS = range(18, 22)  # PCM clock, frame, data in, data out: every I2S HAT (ReSpeaker) uses them


class DebouncedButton:
    """A gpiozero Button whose presses and releases count only once the contact has held
    still for `debounce_s`: a bouncing contact (a dozen edges within a few ms) is one press.
    Done here rather than by the pin factory so it behaves the same on every factory
    (gpiozero's mock pins ignore bounce_time; lgpio's is per chip)."""

    def __init__(self, pin: int, pin_factory: Any, on_press: Callable[[], None],
                 on_release: Callable[[], None] = lambda: None, debounce_s: float = DEBOUNCE_S) -> None:
        from gpiozero import Button

        self.button = Button(pin, pull_up=True, bounce_time=None, pin_factory=pin_factory)
        self.pin = self.button.pin
        self._on_press, self._on_release, self._debounce_s = on_press, on_release, debounce_s
        self.pressed = bool(self.button.is_pressed)  # the settled state
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()
        self.button.when_pressed = self._edge
        self.button.when_released = self._edge

    def _edge(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(self._debounce_s, self._settled)
            self._timer.daemon = True
            self._timer.start()

    def _settled(self) -> None:
        with self._lock:
            now = bool(self.button.is_pressed)
            if now == self.pressed:
                return
            self.pressed = now
        (self._on_press if now else self._on_release)()

    def close(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
        self.button.close()


class MuteControl:
    """A push button that flips mute ("toggle"), or a switch that mutes while closed ("switch")."""

    def __init__(self, pin: int | None, kind: str, pin_factory: Any) -> None:
        self.changed = threading.Condition()
        self._muted = False
        self.button: DebouncedButton | None = None
        if pin is None:
            return
        if kind == "toggle":
            self.button = DebouncedButton(pin, pin_factory, lambda: self._set(not self._muted))
        else:
            self.button = DebouncedButton(pin, pin_factory, lambda: self._set(True), lambda: self._set(False))
            self._muted = self.button.pressed

    @property
    def muted(self) -> bool:
        return self._muted

    def _set(self, muted: bool) -> None:
        with self.changed:
            self._muted = muted
            self.changed.notify_all()

    def wait_unmuted(self, stop: threading.Event, poll_s: float = 0.2) -> None:
        with self.changed:
            while self._muted and not stop.is_set():
                self.changed.wait(poll_s)

    def close(self) -> None:
        if self.button is not None:
            self.button.close()


class TalkButton:
    """Push to talk: a press starts a recording without a wake word."""

    def __init__(self, pin: int | None, pin_factory: Any) -> None:
        self._pressed = threading.Event()
        self.button: DebouncedButton | None = None
        if pin is not None:
            self.button = DebouncedButton(pin, pin_factory, self._pressed.set)

    def take_press(self) -> bool:
        """True once per press since the last call."""
        if self._pressed.is_set():
            self._pressed.clear()
            return True
        return False

    def close(self) -> None:
        if self.button is not None:
            self.button.close()


class LightState(enum.Enum):
    IDLE = "idle"
    RECORDING = "recording"
    MUTED = "muted"
    ERROR = "error"
    ANSWERING = "answering"  # a satellite's answer or announcement playing
    TIMER = "timer"  # a satellite's timer running
    TIMER_DONE = "timer_done"  # a satellite's timer went off


# One place that says what each state looks like on an RGB light (red, green, blue).
LIGHT_COLOURS: dict[LightState, tuple[float, float, float]] = {
    LightState.IDLE: (0.0, 0.0, 0.0),
    LightState.RECORDING: (0.0, 0.0, 1.0),
    LightState.MUTED: (1.0, 0.0, 0.0),
    LightState.ERROR: (1.0, 0.5, 0.0),
    LightState.ANSWERING: (0.0, 1.0, 1.0),
    LightState.TIMER: (0.0, 0.2, 0.0),
    LightState.TIMER_DONE: (0.0, 1.0, 0.0),
}


class Apa102Strip:
    """The APA102 RGB LEDs of the ReSpeaker HATs, on SPI (MOSI GPIO10, SCLK GPIO11), all
    showing one colour. `spi` is a spidev.SpiDev-like object (tests pass a recorder)."""

    def __init__(self, count: int, device: int = 1, brightness: int = 8, spi: Any = None) -> None:
        if spi is None:
            try:
                import spidev
            except ImportError:
                from earmark.wire.errors import ConfigError

                raise ConfigError("gpio.light = \"apa102\" needs spidev: pip install spidev") from None
            spi = spidev.SpiDev()
            spi.open(0, device)
            spi.max_speed_hz = 8_000_000
        self._spi, self.count, self.brightness = spi, count, brightness

    @property
    def color(self) -> tuple[float, float, float]:
        return self._color

    @color.setter
    def color(self, rgb: tuple[float, float, float]) -> None:
        self._color = rgb
        red, green, blue = (round(255 * c) for c in rgb)
        # Start frame, then per LED: 0b111 + 5-bit brightness, blue, green, red; then an end
        # frame of one bit per two LEDs so the last LED's data is clocked through.
        frame = [0, 0, 0, 0]
        frame += [0xE0 | self.brightness, blue, green, red] * self.count
        frame += [0xFF] * ((self.count + 15) // 16)
        self._spi.xfer2(frame)

    def off(self) -> None:
        self.color = (0.0, 0.0, 0.0)

    def close(self) -> None:
        self._spi.close()


class StatusLight:
    """An RGB LED on three PWM pins, the ReSpeaker's APA102 LEDs, or nothing. `state` is
    kept even without an LED, so the behaviour is the same and observable either way."""

    def __init__(self, settings: GpioSettings, pin_factory: Any, spi: Any = None) -> None:
        self.state = LightState.IDLE
        self.led: Any = None
        pins = (settings.led_red_pin, settings.led_green_pin, settings.led_blue_pin)
        if settings.light == "apa102":
            self.led = Apa102Strip(settings.apa102_count, settings.apa102_spi_device, spi=spi)
        elif all(p is not None for p in pins):
            from gpiozero import RGBLED

            self.led = RGBLED(*pins, active_high=settings.led_active_high, pwm=True,
                              pin_factory=pin_factory)
        elif any(p is not None for p in pins):
            from earmark.wire.errors import ConfigError

            raise ConfigError("config key gpio: give all three of led_red_pin, led_green_pin, "
                              "led_blue_pin, or none")

    def show(self, state: LightState) -> None:
        if state is not self.state:
            log.debug("light: %s", state.value)
        self.state = state
        if self.led is not None:
            self.led.color = LIGHT_COLOURS[state]

    def close(self) -> None:
        if self.led is not None:
            self.led.off()
            self.led.close()


class Controls:
    """All of the device's GPIO in one object, built from the settings."""

    def __init__(self, settings: GpioSettings, pin_factory: Any = None) -> None:
        self.pin_factory = pin_factory if pin_factory is not None else make_pin_factory(settings)
        clashing = [p for p in (settings.mute_pin, settings.talk_pin, settings.led_red_pin, settings.led_green_pin,
                                settings.led_blue_pin, settings.led_power_pin) if p in I2S_PINS]
        if clashing:
            log.warning("GPIO %s are I2S audio pins (18-21): with a ReSpeaker or any other I2S HAT "
                        "the microphone will not work; see hardware.md for free pins", clashing)
        self.led_power: Any = None
        if settings.led_power_pin is not None:
            # Some HATs (the ReSpeaker 4-Mic Array: GPIO5) switch their LEDs' supply with a pin.
            from gpiozero import DigitalOutputDevice

            self.led_power = DigitalOutputDevice(settings.led_power_pin, initial_value=True,
                                                 pin_factory=self.pin_factory)
        self.mute = MuteControl(settings.mute_pin, settings.mute_kind, self.pin_factory)
        self.talk = TalkButton(settings.talk_pin, self.pin_factory)
        self.light = StatusLight(settings, self.pin_factory)

    def close(self) -> None:
        self.mute.close()
        self.talk.close()
        self.light.close()
        if self.led_power is not None:
            self.led_power.close()
