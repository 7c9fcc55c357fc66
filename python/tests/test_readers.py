"""The readers against files a real capture wrote. `cargo test` (the
`python_package` test) records a stream and runs this with:

    LINECAP_TEST_BLOCKS    a `capture --blocks` folder
    LINECAP_TEST_COUNTERS  that capture's counters file (a path)
    LINECAP_TEST_PACKETS   packets it received
    LINECAP_TEST_NBLOCKS   blocks it wrote
"""

import os
import unittest

import numpy as np

import linecap
from linecap.blockfiles import presence_bits
from linecap.counters import parse_counters
from linecap.ring import _seq_pattern


def env(name):
    v = os.environ.get(name)
    if v is None:
        raise unittest.SkipTest(f"{name} not set: run through cargo test (python_package)")
    return v


class BlockFiles(unittest.TestCase):
    def test_every_block_reads_with_its_presence_map(self):
        blocks = linecap.read_block_dir(env("LINECAP_TEST_BLOCKS"))
        self.assertEqual(len(blocks), int(env("LINECAP_TEST_NBLOCKS")))
        placed = 0
        for b in blocks:
            self.assertEqual(b.data.dtype, np.uint8)
            self.assertEqual(b.present.shape, b.data.shape[:2])
            self.assertEqual(int(b.present.sum()), b.filled)
            placed += b.filled
            slot_bytes = b.data.shape[2]
            for slot in np.flatnonzero(b.present[0])[:64]:
                self.assertEqual(bytes(b.data[0, slot]), _seq_pattern(b.first_seq + int(slot), slot_bytes))
            if b.zero_filled:
                self.assertFalse(b.data[0][~b.present[0]].any())
        self.assertEqual(placed, int(env("LINECAP_TEST_PACKETS")))
        self.assertEqual([b.first_seq for b in blocks], sorted(b.first_seq for b in blocks))

    def test_a_short_presence_map_is_refused(self):
        with self.assertRaises(ValueError):
            presence_bits("ff", 1, 64)
        with self.assertRaises(ValueError):
            presence_bits("00000000000000ff", 2, 64)


class CountersFile(unittest.TestCase):
    def test_the_capture_counted_what_it_received(self):
        c = linecap.read_counters(env("LINECAP_TEST_COUNTERS"))
        self.assertEqual(c.total("rx.", "packets"), int(env("LINECAP_TEST_PACKETS")))
        self.assertEqual(c.backend, "socket")
        self.assertIn("blocks.0", c)
        self.assertEqual(c.pid, 0, "the capture ended: its pid is cleared")
        self.assertGreater(c.updated_ns, c.started_ns)

    def test_garbage_is_refused(self):
        for raw in (b"", b"LCSTATS1", b"x" * 4096):
            with self.assertRaises(ValueError):
                parse_counters(raw)


if __name__ == "__main__":
    unittest.main()
