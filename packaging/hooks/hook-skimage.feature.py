"""Narrow replacement of pyinstaller-hooks-contrib's hook for ``skimage.feature`` (trimmed bundle only).

The contrib hook collects every submodule of the package. The kiosk uses one scikit-image
function, ``skimage.feature.multiscale_basic_features`` (the instant learner,
``labelassist.learning.pixel_classifier``); this hook ships the lazy loader's stub (``__init__.pyi``,
which ``lazy_loader.attach_stub`` reads at import) and only the submodules that path needs.
multiscale_basic_features is in ``_basic_features``; it calls ``feature.hessian_matrix`` and
``feature.hessian_matrix_eigvals`` (``corner``) through the lazy package, invisible to the analysis.
"""

from PyInstaller.utils.hooks import collect_data_files

datas = collect_data_files("skimage.feature", includes=["*.pyi"])
hiddenimports = ["skimage.feature._basic_features", "skimage.feature.corner"]
