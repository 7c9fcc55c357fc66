"""Receive heaps from linecap's SPEAD generator with spead2's own receiver
and check every byte of item 0x1000; prints one JSON summary line."""
import json
import os
import sys
import time

import spead2
import spead2.recv

port, n = int(sys.argv[1]), int(sys.argv[2])
stream = spead2.recv.Stream(
    spead2.ThreadPool(), spead2.recv.StreamConfig(max_heaps=16), spead2.recv.RingStreamConfig(heaps=4096)
)
stream.add_udp_reader(port, bind_hostname="127.0.0.1", max_size=9200)
print(json.dumps({"ready": True}), flush=True)
heaps = complete = bad = 0
deadline = time.monotonic() + 20
while heaps < n and time.monotonic() < deadline:
    try:
        heap = stream.get_nowait()
    except spead2.Empty:
        time.sleep(0.001)
        continue
    heaps += 1
    if isinstance(heap, spead2.recv.IncompleteHeap):
        continue
    complete += 1
    items = {i.id: i for i in heap.get_items()}
    data = bytes(memoryview(items[0x1000])) if 0x1000 in items else b""
    want = bytes(((heap.cnt * 131) ^ (i * 7) ^ (i >> 8)) & 0xFF for i in range(len(data)))
    if not data or data != want:
        bad += 1
stats = stream.stats
stream.stop()
out = {"heaps": heaps, "complete": complete, "bad": bad}
for k in ("packets", "incomplete_heaps_evicted", "incomplete_heaps_flushed", "too_old_heaps"):
    try:
        out[k] = int(stats[k])
    except Exception:  # older spead2: no such counter
        pass
print(json.dumps(out), flush=True)
os._exit(0)  # spead2 objects can hang the interpreter's exit (seen with the sender)
