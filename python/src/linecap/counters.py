"""A capture's live counters file, /dev/shm/linecap-NAME (what `linecap
stats NAME` shows). All words little-endian u64:

    header (8 words): magic "LCSTATS1", version | nstages << 32, pid,
                      started ns, updated ns, backend (8 bytes of text)...
    stage i (104 words): name (4 words), 24 counter names (3 words each),
                         values at words 80..104

Each stage has one writer; a value read is at most one batch old."""

import os
import struct

MAGIC = b"LCSTATS1"
HEADER_WORDS, STAGE_WORDS, VALUES_AT, MAX_COUNTERS = 8, 104, 80, 24


class Counters(dict):
    """Stage name -> {counter name: value}, with the file's header facts."""

    #: The writer's pid, 0 once it ended.
    pid = 0
    started_ns = 0
    updated_ns = 0
    backend = ""

    def total(self, prefix, counter):
        """A counter summed over the stages whose name starts with `prefix`
        (`total("rx.", "packets")`: every receive thread)."""
        return sum(v.get(counter, 0) for k, v in self.items() if k.startswith(prefix))


def _text(b):
    return b.split(b"\0", 1)[0].decode("ascii", "replace")


def parse_counters(raw):
    """Counters from the bytes of a counters file."""
    if len(raw) < HEADER_WORDS * 8 or raw[:8] != MAGIC:
        raise ValueError("not a linecap counters file (or not published yet)")
    words = struct.unpack_from(f"<{HEADER_WORDS}Q", raw, 0)
    nstages = words[1] >> 32
    c = Counters()
    c.pid, c.started_ns, c.updated_ns = words[2], words[3], words[4]
    c.backend = _text(raw[40:48])
    for i in range(nstages):
        base = (HEADER_WORDS + i * STAGE_WORDS) * 8
        if base + STAGE_WORDS * 8 > len(raw):
            raise ValueError(f"stage {i} lies beyond the file's end")
        name = _text(raw[base : base + 32])
        values = struct.unpack_from(f"<{MAX_COUNTERS}Q", raw, base + VALUES_AT * 8)
        stage = {}
        for j in range(MAX_COUNTERS):
            cname = _text(raw[base + 32 + 24 * j : base + 56 + 24 * j])
            if cname:
                stage[cname] = values[j]
        c[name] = stage
    return c


def read_counters(name_or_path, shm_dir="/dev/shm"):
    """Reads a capture's counters by name (`capture --name NAME`) or path."""
    path = name_or_path if os.sep in name_or_path else os.path.join(shm_dir, "linecap-" + name_or_path)
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    try:
        if not __import__("stat").S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(f"{path} is not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as f:
            return parse_counters(f.read(1 << 20))
    finally:
        os.close(fd)
