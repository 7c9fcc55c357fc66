"""Readers of what linecap writes: the shared-memory block ring
(`capture --shm`), block files (`capture --blocks`) and the live counters
files (`/dev/shm/linecap-NAME`), as numpy views. The layouts are in
linecap's docs/SHM.md and its stats module."""

from .blockfiles import FileBlock, read_block_dir, read_block_file
from .counters import Counters, read_counters
from .ring import Block, BlockRing

__all__ = [
    "Block",
    "BlockRing",
    "Counters",
    "FileBlock",
    "read_block_dir",
    "read_block_file",
    "read_counters",
]
__version__ = "0.5.0"
