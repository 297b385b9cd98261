"""Nothing lost, nothing doubled: 200 clips from a real device publisher through the
secured Mosquitto to the ingester, while the broker restarts twice, the ingester is
SIGKILLed twice and the device is cut off the network for a while."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from earmark.device.sync.publisher import Publisher
from earmark.device.sync.spool import Spool
from earmark.wire.envelope import decode_envelope
from tests.support.netcut import NetCut
from tests.support.securecloud import SecureCloud

CLIPS = 200


def test_200_clips_arrive_exactly_once_through_restarts_kills_and_a_network_cut(tmp_path: Path) -> None:
    cloud = SecureCloud(tmp_path)
    cloud.start_broker()
    cloud.start_ingester()
    owner = cloud.store.registry.add_owner("Field").owner_id
    device, password = cloud.add_device(owner, "field-pi")
    net = NetCut(cloud.port)
    spool = Spool(tmp_path / "spool", 10**9)
    settings = cloud.device_broker(device.device_id, password, url=f"mqtts://127.0.0.1:{net.port}",
                                   receipt_timeout_s=4.0, keepalive_s=5)
    publisher = Publisher(settings, device.device_id, spool)
    envelopes = [device.clip(seed=i, seconds=0.5) for i in range(CLIPS)]
    ids = {decode_envelope(e).header.clip_id for e in envelopes}

    def record() -> None:  # the recorder side: spool, notify, never wait on the network
        for envelope in envelopes:
            spool.put(decode_envelope(envelope).header.clip_id, envelope)
            publisher.notify()
            time.sleep(0.03)

    recorder = threading.Thread(target=record)
    try:
        publisher.start()
        recorder.start()
        time.sleep(0.8)
        cloud.kill_ingester()           # 1st ingester kill, mid-stream
        time.sleep(0.5)
        cloud.start_ingester()
        time.sleep(0.8)
        cloud.stop_broker()             # 1st broker restart
        time.sleep(0.7)
        cloud.start_broker()
        time.sleep(0.8)
        net.cut()                       # the device is off the network for a while
        time.sleep(3.0)
        net.restore()
        time.sleep(0.5)
        cloud.kill_ingester()           # 2nd ingester kill
        cloud.start_ingester()
        time.sleep(0.8)
        cloud.stop_broker()             # 2nd broker restart
        time.sleep(0.7)
        cloud.start_broker()
        recorder.join()
        assert publisher.wait_drained(timeout=120), f"{len(spool.clips())} clips never got a receipt"
        stored = cloud.clips(owner)
        assert len(stored) == len(set(stored)) == CLIPS and set(stored) == ids
        assert spool.clips() == [] and not spool.rejected_dir.exists()
        assert cloud.quarantine_reasons() == []
    finally:
        publisher.stop()
        net.close()
        cloud.close()
