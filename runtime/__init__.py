"""What both programs run on, beside the contract (earmark.wire) and not part of it: the
command runner and its logging, the settings loader, durable file writes, and the MQTT
client set-up, one each so the device and the cloud cannot drift apart. Imports the wire,
never either side. (`earmark.runtime.transport` needs paho: it is not imported here.)"""

from earmark.runtime.command import add_global_options, confirmed, run_command, setup_logging, version
from earmark.runtime.config import (
    add_flags,
    below,
    between,
    check,
    flag_values,
    load,
    one_of,
    override,
    read_toml,
    setting,
    within,
)
from earmark.runtime.durable import write_file

__all__ = [
    "add_flags",
    "add_global_options",
    "below",
    "between",
    "check",
    "confirmed",
    "flag_values",
    "load",
    "one_of",
    "override",
    "read_toml",
    "run_command",
    "setting",
    "setup_logging",
    "version",
    "within",
    "write_file",
]
