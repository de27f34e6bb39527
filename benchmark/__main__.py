"""`bench` and `python -m prunebench`: Ctrl-C and SIGTERM are noted from the first moment (while
torch and the rest import), then the CLI runs and reports them in one line."""

import sys

from prunebench import signals

signals.install(raising=False)

from prunebench.cli import main

if __name__ == "__main__":
    sys.exit(main())
