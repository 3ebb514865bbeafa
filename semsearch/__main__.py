"""`python -m semsearch` is the `semsearch` command."""

import sys

from semsearch.cli.main import main

sys.exit(main())
