"""`python -m examples.shop`: the same as `veil demo`."""

import sys

from veil.demo import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
