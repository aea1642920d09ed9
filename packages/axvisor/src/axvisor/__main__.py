"""``python -m axvisor``: the command line, with start-up's garbage collection paused (startup_gc)."""

import sys

from . import startup_gc


def main() -> int:
    """Pause collection, then import and run the command line: the imports are most of start-up.
    A console script pointed here (not at ``axvisor.cli:main``, whose import is those imports)
    would start the same way."""
    startup_gc.pause()
    from .cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
