"""`python -m earmark.cloud.cli` is `earmark-cloud`."""

import sys

from earmark.cloud.cli.main import main

sys.exit(main())
