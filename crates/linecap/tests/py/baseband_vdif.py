"""Write VDIF frames with baseband, then send each frame as a datagram.
Frames 100-109 of each thread are written flagged invalid (baseband's
valid=False). Prints the first frame's header as baseband reads it (JSON),
for cross-checks."""
import json
import socket
import sys

import astropy.units as u
import numpy as np
from astropy.time import Time
from baseband import vdif

path, port, nframes, nthread = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
spf = 512  # samples per frame, 2-bit real: 128 data bytes
rng = np.random.default_rng(7)
data = rng.integers(-2, 2, size=(nframes * spf, nthread)).astype(np.float32) + 0.5
with vdif.open(path, "ws", sample_rate=512 * u.kHz, samples_per_frame=spf, nchan=1, bps=2,
               complex_data=False, edv=0, station=1, time=Time("2026-01-01T00:00:00"), nthread=nthread) as fw:
    bad = (100 * spf, 110 * spf) if nframes > 110 else (0, 0)
    fw.write(data[:bad[0]])
    if bad[1] > bad[0]:
        fw.write(data[bad[0]:bad[1]], valid=False)
    fw.write(data[bad[1]:])
with open(path, "rb") as f:
    raw = f.read()
with vdif.open(path, "rb") as fr:
    h = fr.read_header()
    info = {"seconds": int(h["seconds"]), "frame_nr": int(h["frame_nr"]), "thread_id": int(h["thread_id"]),
            "frame_nbytes": int(h.frame_nbytes), "frames": len(raw) // h.frame_nbytes,
            "invalid_frames": (bad[1] - bad[0]) // spf * nthread}
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
n = info["frame_nbytes"]
for i in range(0, len(raw), n):
    s.sendto(raw[i:i + n], ("127.0.0.1", port))
    if i % (64 * n) == 0:
        import time; time.sleep(0.001)
print(json.dumps(info), flush=True)
