"""The device: audio in (`audio/`), hearing the wake word and the request (`listening/`),
getting each clip safely to the cloud (`sync/`), the buttons and light (`controls`), the
loop that moves frames between them (`loop`), and the one place they are put together
(`assembly`). `cli` is `earmark-device`; `settings` its config."""

from earmark.device.assembly import AssembledDevice, assemble
from earmark.device.settings import DeviceSettings, load_settings

__all__ = ["AssembledDevice", "DeviceSettings", "assemble", "load_settings"]
