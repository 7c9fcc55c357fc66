"""Block files written by `linecap capture --blocks DIR`: one data file
and one JSON sidecar per block (the sidecar is written last: a block with
a sidecar is complete)."""

import json
import os
from dataclasses import dataclass

import numpy as np


@dataclass
class FileBlock:
    """One block read from its files."""

    number: int
    first_seq: int
    filled: int
    lost: int
    zero_filled: bool
    format: dict
    #: uint8, shape (channels, slots, slot_bytes)
    data: np.ndarray
    #: bool, shape (channels, slots): which slots arrived
    present: np.ndarray


def presence_bits(hex_words, channels, slots):
    """The sidecar's presence map (u64 words, each as 16 hex digits, bit i
    of word w = slot 64*w + i, row-major over channels) as a bool array."""
    n = channels * slots
    if len(hex_words) % 16:
        raise ValueError("presence is not a whole number of 64-bit words")
    words = np.array([int(hex_words[i : i + 16], 16) for i in range(0, len(hex_words), 16)], dtype="<u8")
    bits = np.unpackbits(words.view(np.uint8), bitorder="little")
    if bits.size < n:
        raise ValueError(f"presence holds {bits.size} bits, the layout needs {n}")
    return bits[:n].reshape(channels, slots).astype(bool)


def read_block_file(sidecar_path, mmap=True):
    """Reads one block from its sidecar's path; the data is memory-mapped
    (read-only) unless `mmap` is False."""
    with open(sidecar_path) as f:
        s = json.load(f)
    lay = s["layout"]
    channels, slots, slot_bytes = lay["channels"], lay["slots"], lay["slot_bytes"]
    data_path = os.path.join(os.path.dirname(sidecar_path), os.path.basename(s["data"]))
    shape = (channels, slots, slot_bytes)
    size = channels * slots * slot_bytes
    if os.path.getsize(data_path) != size:
        raise ValueError(f"{data_path}: {os.path.getsize(data_path)} bytes, the layout says {size}")
    if mmap:
        data = np.memmap(data_path, dtype=np.uint8, mode="r", shape=shape)
    else:
        data = np.fromfile(data_path, dtype=np.uint8).reshape(shape)
    return FileBlock(
        number=s["number"],
        first_seq=s["first_seq"],
        filled=s["filled"],
        lost=s["lost"],
        zero_filled=s.get("zero_filled", False),
        format=s["format"],
        data=data,
        present=presence_bits(s["presence"], channels, slots),
    )


def read_block_dir(path, mmap=True):
    """Every complete block of a folder, in sequence order."""
    sidecars = [os.path.join(path, n) for n in os.listdir(path) if n.endswith(".json")]
    blocks = [read_block_file(p, mmap=mmap) for p in sidecars]
    blocks.sort(key=lambda b: b.first_seq)
    return blocks
