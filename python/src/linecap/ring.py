"""Read linecap's shared-memory block ring zero-copy with numpy.

    from linecap import BlockRing
    ring = BlockRing("fpga")                 # /dev/shm/linecap-blocks-fpga
    for b in ring.blocks(timeout=5.0):
        x = b.data                           # numpy uint8 view: (channels, slots, slot_bytes)
        ok = b.present                       # numpy bool: (channels, slots)
        ...                                  # use the block, then ask for the next one
        if b.overwritten():                  # lossy ring: the writer lapped us meanwhile
            ...

The view stays valid until the next iteration; the reader's position is
published when the next block is asked for. Needs Python 3 and numpy only.
The layout is described in docs/SHM.md; `linecap-ring NAME` (or `python3 -m linecap.ring NAME`)
prints one JSON line per block.
"""

import json
import mmap
import stat
import os
import sys
import time

import numpy as np

MAGIC = b"LCBLKRG1"
HEADER = 4096
WRITE_SEQ, READ_SEQ, PID = 128 // 8, 192 // 8, 64 // 8
COUNTERS = {"published": 256 // 8, "overwritten": 264 // 8, "backpressure_waits": 272 // 8, "dropped": 280 // 8}


class Block:
    """One block of the ring, viewed in place."""

    def __init__(self, ring, k):
        self._ring, self.seq = ring, k
        base = HEADER + (k % ring.nslots) * ring.stride
        self._base = base
        meta = np.frombuffer(ring._mm, dtype="<u8", count=6, offset=base)
        self.number, self.first_seq, self.filled, self.lost = (int(v) for v in meta[1:5])
        words = int(meta[5])
        bits = np.frombuffer(ring._mm, dtype="<u8", count=words, offset=base + 64)
        n = ring.channels * ring.slots
        flat = np.unpackbits(bits.view(np.uint8), bitorder="little")[:n]
        self.present = flat.reshape(ring.channels, ring.slots).astype(bool)
        self.data = np.frombuffer(ring._mm, dtype=np.uint8, count=ring.block_bytes, offset=base + ring.meta).reshape(
            ring.channels, ring.slots, ring.slot_bytes
        )

    def overwritten(self):
        """True when the writer has reused this slot since the block was taken."""
        return int(np.frombuffer(self._ring._mm, dtype="<u8", count=1, offset=self._base)[0]) != self.seq + 1


class BlockRing:
    """A linecap block ring opened for reading."""

    def __init__(self, name, shm_dir="/dev/shm"):
        path = os.path.join(shm_dir, "linecap-blocks-" + name)
        # Never follow a symlink or block on a FIFO that someone planted
        # under the name; only a regular file is a ring.
        flags = os.O_NOFOLLOW | os.O_NONBLOCK
        try:
            fd = os.open(path, os.O_RDWR | flags)
            self.writable = True
        except PermissionError:
            # Another user's ring (mode 0644): read it without acknowledging
            # blocks; a lossless writer then cannot see our progress.
            fd = os.open(path, os.O_RDONLY | flags)
            self.writable = False
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size < HEADER:
            os.close(fd)
            raise ValueError(path + " is not a linecap block ring")
        self._f = os.fdopen(fd, "r+b" if self.writable else "rb")
        access = mmap.ACCESS_WRITE if self.writable else mmap.ACCESS_READ
        self._mm = mmap.mmap(self._f.fileno(), 0, access=access)
        if self._mm[:8] != MAGIC:
            raise ValueError(path + " is not a linecap block ring")
        h = np.frombuffer(self._mm, dtype="<u8", count=HEADER // 8, offset=0)
        self._h = h
        self.nslots, self.stride, self.meta, self.block_bytes = (int(h[i]) for i in (2, 3, 4, 5))
        self.slot_bytes, self.slots = int(h[6]) & 0xFFFFFFFF, int(h[6]) >> 32
        self.channels, self.lossless = int(h[7]) & 0xFFFFFFFF, bool(int(h[7]) >> 32)
        self.format = {0: "seq", 1: "raw", 2: "vdif", 3: "spead", 4: "spead-heap"}.get(int(h[9]), "unknown")
        if HEADER + self.nslots * self.stride != len(self._mm) or self.nslots == 0:
            raise ValueError(path + ": header does not match the file's size")
        # The reader's position: shared with the writer when we may write it.
        if self.writable:
            self._read = np.frombuffer(self._mm, dtype="<u8", count=1, offset=READ_SEQ * 8)
        else:
            self._read = np.zeros(1, dtype="<u8")
        self.skipped = 0

    def counters(self):
        return {k: int(self._h[i]) for k, i in COUNTERS.items()}

    def writer_alive(self):
        return int(self._h[PID]) != 0

    def blocks(self, timeout=5.0):
        """Yields blocks in order until the writer finished and all were read,
        or no block came for `timeout` seconds."""
        r = int(self._read[0])
        last = time.monotonic()
        while True:
            w = int(self._h[WRITE_SEQ])
            if w > r + self.nslots:  # lapped (lossy ring): skip to the oldest still there
                self.skipped += w - self.nslots - r
                r = w - self.nslots
            if r < w:
                b = Block(self, r)
                if b.overwritten():
                    self.skipped += 1
                else:
                    yield b
                r += 1
                self._read[0] = r  # publish our position (the writer reads it)
                last = time.monotonic()
                continue
            if not self.writer_alive() or time.monotonic() - last > timeout:
                return
            time.sleep(0.001)

    def close(self):
        self._mm.close()
        self._f.close()


def _seq_pattern(seq, nbytes):
    """linecap's seq payload bytes 8.. for `seq` (see src/format/seq.rs)."""
    m = (1 << 64) - 1
    z = (seq + 0x9E3779B97F4A7C15) & m
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
    base = z ^ (z >> 31)
    out = bytearray()
    k = 0
    while len(out) < nbytes:
        out += ((base ^ (((k + 1) * 0xD6E8FEB86659FD93) & m)) & m).to_bytes(8, "little")
        k += 1
    return bytes(out[:nbytes])


def main():
    name = sys.argv[1]
    verify = "--verify-seq" in sys.argv
    ring = BlockRing(name)
    for b in ring.blocks(timeout=float(os.environ.get("LINECAP_RING_TIMEOUT", "5"))):
        bad = 0
        if verify and ring.format == "seq":
            for slot in np.flatnonzero(b.present[0]):
                want = _seq_pattern(b.first_seq + int(slot), ring.slot_bytes)
                if bytes(b.data[0, slot]) != want:
                    bad += 1
            missing = ~b.present[0]
            if missing.any() and b.data[0][missing].any():
                bad += 1
        rec = {"seq": b.seq, "first_seq": b.first_seq, "filled": b.filled, "lost": b.lost, "bad": bad,
               "present": int(b.present.sum()), "overwritten": b.overwritten()}
        print(json.dumps(rec), flush=True)
    print(json.dumps({"done": True, "skipped": ring.skipped, **ring.counters()}), flush=True)


if __name__ == "__main__":
    main()
