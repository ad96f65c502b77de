"""Label Assistant kiosk: offline, touch-first assisted labelling of segmentation masks.

The package follows the assisted-labelling workflow: a selector picks the next
sample, pre-assistance prepares a display image and a pre-label, the annotator
corrects it, post-assistance inspects and post-processes it, and the store keeps
every label version.
"""

__version__ = "0.1.0"
