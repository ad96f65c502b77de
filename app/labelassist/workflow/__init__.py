"""The assisted-labelling workflow as pure numpy functions (no Kivy below here).

Importing this package registers the built-in steps in
:data:`labelassist.workflow.registry.REGISTRY`.
"""

from labelassist.workflow import (  # noqa: F401  (imported to register their steps)
    inspection,
    postprocess,
    prelabel,
    preprocess,
    prompted,
    selector,
)
from labelassist.workflow.registry import REGISTRY, Param, register

__all__ = ["REGISTRY", "Param", "register"]
