"""Packages that give their modules' names lazily (`storage`, `ganinv.metrics`, through ganinv/utils/lazy_exports.py):
importing the package imports none of those modules; a name imports its module once; other names are refused."""

from __future__ import annotations

import json

from _fresh_process import fresh_python

PROBE = """
import json, sys
import storage, ganinv.metrics
seen = {"light": sorted({"zarr", "torch", "storage.latent_store", "ganinv.metrics.reconstruction"} & set(sys.modules))}
from storage import LatentStore
from ganinv.metrics import ood_scores
seen["loaded"] = [LatentStore.__module__, ood_scores.__module__, "LatentStore" in vars(storage)]
seen["dir"] = ["LatentStore" in dir(storage), "reconstruction_metrics" in dir(ganinv.metrics)]
seen["all"] = [storage.__all__ == sorted(storage.__all__), "frechet_distance" in ganinv.metrics.__all__]
try:
    storage.NoSuchName
except AttributeError as err:
    seen["refused"] = str(err)
from ganinv.metrics import ood  # a submodule, not an export
seen["submodule"] = ood.__name__
print(json.dumps(seen))
"""


def test_a_package_imports_a_module_only_for_the_name_asked():
    seen = json.loads(fresh_python(PROBE, timeout=300))
    assert seen["light"] == []
    assert seen["loaded"] == ["storage.latent_store", "ganinv.metrics.ood", True]  # kept in the package after use
    assert seen["dir"] == [True, True] and seen["all"] == [True, True]
    assert seen["refused"] == "module 'storage' has no attribute 'NoSuchName'"
    assert seen["submodule"] == "ganinv.metrics.ood"
