"""``python -m labelassist`` is the same as the ``labelassist`` command."""

from labelassist.cli import main

raise SystemExit(main())
