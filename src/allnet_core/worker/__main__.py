"""``python -m allnet_core.worker``: run the deep-learning worker process."""

import sys

from allnet_core.worker.server import main

if __name__ == "__main__":
    sys.exit(main())
