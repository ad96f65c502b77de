"""Narrow replacement of pyinstaller-hooks-contrib's hook for ``skimage.exposure`` (trimmed bundle only).

The contrib hook collects every submodule of the package. The kiosk uses one scikit-image
function, ``skimage.feature.multiscale_basic_features`` (the instant learner,
``labelassist.learning.pixel_classifier``); this hook ships the lazy loader's stub (``__init__.pyi``,
which ``lazy_loader.attach_stub`` reads at import) and only the submodules that path needs.
Imported as a package only; nothing of it runs.
"""

from PyInstaller.utils.hooks import collect_data_files

datas = collect_data_files("skimage.exposure", includes=["*.pyi"])
hiddenimports = []
