"""The statement an answer to a data request carries beside the copy (GDPR Art. 15(1)(a)-(h)
and (2)): why the recordings are kept, what is kept, who receives it, for how long, the
owner's rights, where to complain, where the data came from, and the automated decision
that starts every recording. Rendered into every export (statement.txt, and index.html)
from the operator's [data_request] settings in cloud.toml; what the operator left unset is
said in a default text marked as one."""

from __future__ import annotations

from dataclasses import dataclass, field

from earmark.cloud.owner.retention import effective_days
from earmark.cloud.settings import DataRequestSettings

UNSET = "[default text: the operator of this Earmark has not set this]"


@dataclass(frozen=True)
class DataRequest:
    """What the statement is rendered from: the operator's settings and the service's retention."""

    settings: DataRequestSettings = field(default_factory=DataRequestSettings)
    service_days: int = 0


def _given(value: str, default: str) -> str:
    return value.strip() if value.strip() else f"{default} {UNSET}"


def render_statement(request: DataRequest, owner_id: str, created: str, own_days: int | None) -> bytes:
    s = request.settings
    days = effective_days(request.service_days, own_days)
    kept = (f"Each recording is deleted {days} days after it was made"
            + (" (your own choice)." if own_days and days == own_days else " (the service's limit).")
            if days else "Recordings are kept until you delete them (no limit is set).")
    sections = [
        ("Who is responsible", _given(s.controller, "The operator of this Earmark service.")
         + "\nContact: " + _given(s.contact, "the person who sent you your invite link.")),
        ("(a) Why your data is kept", _given(
            s.purposes, "To keep the recordings your devices made after their wake word or talk button, "
                        "so that you can listen to them, download them and delete them.")),
        ("(b) What is kept", "Your recordings (audio, when, which device, how each started), your devices "
                             "(their public keys, when they were yours, their last status), your marks, your "
                             "passkeys and sessions (when made, how often used; no key or token is in this "
                             "archive), the record of every "
                             "recording deleted (ids and positions, no audio), and a log of everything done with "
                             "your data. All of it is in this archive (your-data.json, devices.json, "
                             "manifest.json, clips/)."),
        ("(c) Who receives it", _given(s.recipients, "Nobody besides the service itself: no recording is sent "
                                                     "to anyone else.")),
        ("(d) How long it is kept", kept + " Everything is deleted when you erase your account."),
        ("(e) Your rights", "You may ask for a copy of your data (this archive), have it corrected, have it "
                            "erased (the portal's \"Erase everything\", or delete single recordings), have its "
                            "use restricted, and object to its use. You may take this archive to another "
                            "service (your-data.json and the recordings are in open formats)."),
        ("(f) Where to complain", _given(s.authority, "The data protection supervisory authority of the "
                                                      "country where you live or work.")),
        ("(g) Where the data came from", "From you: your own devices recorded it, and signed each recording."),
        ("(h) Automated decisions", "Every recording starts with an automated decision on your device: a "
                                    "wake-word model (openWakeWord) scores the sound it hears, and a score above "
                                    "the device's threshold starts a recording; nothing else is decided about "
                                    "you automatically, and nothing is used to profile you."),
    ]
    body = "\n\n".join(f"{title}\n{'-' * len(title)}\n{text}" for title, text in sections)
    return (f"About your data\n===============\n\nThe statement that comes with this export for owner {owner_id}, "
            f"made {created}.\n\n{body}\n").encode()
