"""Send N heaps of SIZE bytes with spead2's own sender (one item, id 0x1000).
An optional fourth argument sets spead2's packet size: smaller than the
heap, each heap spans packets whose payloads differ in length (the first
carries the item pointer)."""
import os
import sys

import numpy as np
import spead2
import spead2.send

port, n, size = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
packet = int(sys.argv[4]) if len(sys.argv) > 4 else size + 256
# No rate in spead2 itself: with one, send_heap was seen to spin forever here.
cfg = spead2.send.StreamConfig(max_packet_size=packet)
stream = spead2.send.UdpStream(spead2.ThreadPool(), [("127.0.0.1", port)], cfg)
ig = spead2.send.ItemGroup(flavour=spead2.Flavour(4, 64, 48, 0))
item = ig.add_item(0x1000, "data", "payload", shape=(size,), dtype=np.uint8)
for h in range(n):
    item.value = ((np.arange(size, dtype=np.uint32) * 7 + h * 131) & 0xFF).astype(np.uint8)
    stream.send_heap(ig.get_heap(descriptors="none", data="all"))
stream.send_heap(ig.get_end())
print("sent", n, flush=True)
# Seen here: the interpreter sometimes hangs at exit while destroying
# spead2's stream and thread pool; everything is sent, so leave at once.
os._exit(0)
