"""Label Assistant kiosk: offline, touch-first assisted labelling of segmentation masks.

The package follows the assisted-labelling workflow: a selector picks the next
sample, pre-assistance prepares a display image and a pre-label, the annotator
corrects it, post-assistance inspects and post-processes it, and the store keeps
every label version.
"""

import os as _os

# Offline by construction: ONNX Runtime (1.32) ships Microsoft's 1DS telemetry, which queues
# events on disk and uploads them over HTTPS. The kiosk never talks to the network, so it is
# switched off before anything imports onnxruntime (every import goes through this package),
# whatever the environment says: offline is not a preference.
_os.environ["ORT_DISABLE_TELEMETRY"] = "1"

__version__ = "0.1.0"
