"""`python -m hub --db PATH --port N --admin-token T`: see hub.server."""

import sys

from .server import main

sys.exit(main())
