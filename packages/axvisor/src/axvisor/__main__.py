import sys

from . import startup_gc

startup_gc.pause()  # before the imports: start-up allocates much and frees little (see startup_gc)

from .cli import main  # noqa: E402

sys.exit(main())
