"""``python -m yoloslim ...``: the ``yoloslim`` command."""

import sys

from yoloslim.cli.main import main

if __name__ == "__main__":  # not when a spawned latency worker imports this as __mp_main__
    sys.exit(main())
