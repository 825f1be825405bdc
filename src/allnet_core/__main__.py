import sys

from allnet_core.cli import main

sys.exit(main())
