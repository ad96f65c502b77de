"""Entry point of the PyInstaller bundle: the same as the ``labelassist`` console script."""

import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()  # a frozen child process must not re-run the app
    from labelassist.cli import main

    sys.exit(main())
