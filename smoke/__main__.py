"""`python -m smoke URL`: check a running service from outside (see smoke.client)."""

import sys

from smoke.client import main

sys.exit(main())
