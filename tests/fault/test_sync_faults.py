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
from tests.support.waiting import wait_until

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

    def stored_at_least(count: int) -> None:
        wait_until(lambda: len(cloud.clips(owner)) >= count, 120, f"{count} clips stored", interval=0.05)

    recorder = threading.Thread(target=record)
    try:
        publisher.start()
        recorder.start()
        # Each fault waits for a number of clips stored (a signal), not for the clock.
        stored_at_least(20)
        cloud.kill_ingester()           # 1st ingester kill, mid-stream
        cloud.start_ingester()
        stored_at_least(50)
        cloud.stop_broker()             # 1st broker restart
        cloud.start_broker()
        stored_at_least(80)
        net.cut()                       # the device is off the network for a while
        wait_until(lambda: len(spool.clips()) >= 15, 60, "15 clips waiting in the cut-off device's spool")
        net.restore()
        stored_at_least(120)
        cloud.kill_ingester()           # 2nd ingester kill
        cloud.start_ingester()
        stored_at_least(150)
        cloud.stop_broker()             # 2nd broker restart
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
