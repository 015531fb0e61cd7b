"""``python -m musiq ...`` is the ``musiq`` command."""
import sys

from .cli.main import main

sys.exit(main())
