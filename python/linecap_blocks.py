"""Kept for scripts that ran `python3 linecap_blocks.py NAME` or imported
`linecap_blocks`: the reader now lives in the `linecap` package
(`pip install ./python`); this runs it from the source tree."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "src"))

from linecap.ring import Block, BlockRing, main  # noqa: E402,F401

if __name__ == "__main__":
    main()
