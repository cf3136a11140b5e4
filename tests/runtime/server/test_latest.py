"""Latest frame wins: the one-slot mailbox between a stream's reader and its worker."""

from __future__ import annotations

import threading

from muselens.runtime.server.latest import LatestSlot


def test_latest_slot_keeps_only_the_newest():
    slot: LatestSlot[int] = LatestSlot()
    for i in range(5):
        slot.put(i)
    assert slot.take(0).item == 4 and slot.dropped == 4 and slot.received == 5
    assert slot.take(0.01) is None and not slot.closed
    got = []
    reader = threading.Thread(target=lambda: got.append(slot.take(5)))
    reader.start()
    slot.put(9)
    reader.join(5)
    assert got[0].item == 9
    slot.put(10)
    slot.close()
    slot.put(11)  # ignored once closed
    assert slot.take().item == 10 and slot.take() is None
