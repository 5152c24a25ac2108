"""`make bench`: placeholder until the benchmarks land; fails loudly rather than print numbers."""

import sys

if __name__ == "__main__":
    sys.exit("bench: not implemented yet")
