"""PyInstaller runtime hook: runs in the bundle before the app's own code.

* Shipped models live in ``<bundle>/_internal/models`` (the source tree keeps them in
  ``models/`` beside ``app/``): point ``labelassist.models`` at them unless the site
  overrides ``LABELASSIST_MODELS``.
* Offline by construction: ONNX Runtime's 1DS telemetry is forced off (not ``setdefault``:
  ``ORT_DISABLE_TELEMETRY=0`` or an empty value in the environment would switch it ON; measured
  here: DNS look-ups of mobile.events.data.microsoft.com ~9 s after the first session).
* Kivy must not parse the app's command line (``--smoke``, sub-commands).
"""

import os
import sys

_base = getattr(sys, "_MEIPASS", os.path.dirname(os.path.abspath(sys.executable)))
os.environ.setdefault("LABELASSIST_MODELS", os.path.join(_base, "models"))
os.environ["ORT_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("KIVY_NO_ARGS", "1")
