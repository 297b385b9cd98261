"""A simulated device, as the harness runs it on a devices host: it makes clips at a steady
rate, seals and signs each as a real device does (wire v2 chain), spools it durably and
writes its id to a ledger (what this device spooled: the checker's truth), and its real
Publisher sends them over MQTT (3.1.1 to a RabbitMQ node, or what the config says, with its
CA for mqtts://) to the broker, deleting each spooled clip only on its receipt; with
`recipients` each clip is sealed to them (wire v3). When the stop file appears (or it has
made max_clips) it makes no more clips, waits until the spool is empty, and exits 0 (3 if
the spool did not drain in time).

Usage: device.py --config device.json (written by deploy/cluster/run.py)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from earmark.device.listening.recorder import Recording
from earmark.device.settings import BrokerSettings
from earmark.device.sync.chain import Chain
from earmark.device.sync.identity import Sealer
from earmark.device.sync.publisher import Publisher
from earmark.device.sync.spool import Spool


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", type=Path, required=True)
    c = json.loads(parser.parse_args().config.read_text())
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {c['device_id']} %(levelname)s %(message)s")
    folder = Path(c["folder"])
    key = load_pem_private_key(Path(c["key_file"]).read_bytes(), None)
    spool = Spool(folder / "spool", 10**10)
    settings = BrokerSettings(url=c["broker"], username=c["username"], password_file=c["password_file"],
                              mqtt_version=c.get("mqtt_version", "3.1.1"), receipt_timeout_s=c["receipt_timeout_s"],
                              keepalive_s=10, in_flight=c.get("in_flight", 8), ca=c.get("ca", ""))
    publisher = Publisher(settings, c["device_id"], spool)
    sealer = Sealer(c["device_id"], c["owner_id"], key, Chain(folder / "chain.json"),  # type: ignore[arg-type]
                    tuple(c.get("recipients", ())))  # sealed to the household, as a paired device does
    stop_file = Path(c["stop_file"])
    rng = np.random.default_rng(abs(hash(c["device_id"])) % 2**32)
    publisher.start()
    made = 0
    with open(folder / "ledger", "a") as ledger:
        next_at = time.monotonic()
        while not stop_file.exists() and not (c.get("max_clips") and made >= c["max_clips"]):
            audio = rng.integers(-3000, 3000, int(16000 * c["clip_seconds"])).astype(np.int16)
            clip_id, envelope = sealer.seal(Recording(audio, 0, "button", None, None, "end_of_speech"),
                                            datetime.now(UTC))
            spool.put(clip_id, envelope)
            sealer.spooled(envelope)
            ledger.write(f"{clip_id}\n")
            ledger.flush()
            os.fsync(ledger.fileno())
            publisher.notify()
            made += 1
            next_at += 1.0 / c["clips_per_s"]
            time.sleep(max(0.0, next_at - time.monotonic()))
    drained = publisher.wait_drained(c["drain_timeout_s"])
    left = len(spool.clips())
    publisher.stop()
    logging.info("made %d clips; %s", made, "spool drained" if drained else f"{left} still spooled")
    return 0 if drained else 3


if __name__ == "__main__":
    sys.exit(main())
