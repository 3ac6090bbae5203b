"""The extras match the shipped configs: what a config uses that needs a package beyond the framework's own is in that
framework's extra (``pip install 'pe-dense[mmseg]'`` / ``'pe-dense[detectron2]'``), read from setup.py itself."""
import glob
import importlib.util
import os
import runpy
from unittest import mock

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# a part a config names -> (the framework's extra, the package the part imports when it runs)
NEEDS = {
    "Albu": ("mmseg", "albumentations"),  # mmseg's Albu transform (the NYU configs, through mmseg's NYU pipeline)
    "LVISEvaluator": ("detectron2", "lvis"),  # Detectron2's LVIS evaluation
    "FixedSizeCrop": ("detectron2", "shapely"),  # crops polygons with fvcore's CropTransform (shapely)
}


@pytest.fixture(scope="module")
def extras():
    import setuptools

    with mock.patch.object(setuptools, "setup") as setup:
        runpy.run_path(os.path.join(ROOT, "setup.py"))
    return {k: {r.split("=")[0].split(">")[0].split("<")[0].split("[")[0].strip() for r in v}
            for k, v in setup.call_args.kwargs["extras_require"].items()}


def _names(node, found):
    """Every ``type`` (mmengine) and ``_target_`` (LazyConfig) a config names, by its last component."""
    if isinstance(node, dict) or hasattr(node, "items"):
        for k, v in node.items():
            if k in ("type", "_target_"):
                name = v if isinstance(v, str) else getattr(v, "__name__", str(v))
                found.add(name.rpartition(".")[2])
            else:
                _names(v, found)
    elif isinstance(node, (list, tuple)) or type(node).__name__ == "ListConfig":
        for v in node:
            _names(v, found)
    return found


def _load(framework):
    """How the framework reads one of its configs, as a plain container, and the folder of shared parts."""
    pytest.importorskip(framework)
    if framework == "mmseg":
        from mmengine.config import Config

        return (lambda p: Config.fromfile(p).to_dict()), "_base_"
    from detectron2.config import LazyConfig
    from omegaconf import OmegaConf

    return (lambda p: OmegaConf.to_container(LazyConfig.load(p), resolve=False)), "common"


def _uses(framework):
    load, shared = _load(framework)
    return {os.path.relpath(p, ROOT): _names(load(p), set())
            for p in glob.glob(os.path.join(ROOT, "configs", framework, "*", "*.py"))
            if os.sep + shared + os.sep not in p}


@pytest.mark.parametrize("framework", ["mmseg", "detectron2"])
def test_what_the_configs_use_is_in_the_frameworks_extra(framework, extras):
    uses = _uses(framework)
    missing = sorted({f"{cfg}: {name} needs {NEEDS[name][1]}" for cfg, names in uses.items() for name in names
                      if name in NEEDS and NEEDS[name][0] == framework and NEEDS[name][1] not in extras[framework]})
    assert not missing, f"not in pe-dense[{framework}]:\n" + "\n".join(missing)
    seen = {name for names in uses.values() for name in names if name in NEEDS}
    assert seen == {n for n, (fw, _) in NEEDS.items() if fw == framework}, "the walk finds what the configs use"
    for name in seen:  # installed as the README installs the extra (scripts/setup.sh)
        assert importlib.util.find_spec(NEEDS[name][1]), f"{NEEDS[name][1]} ({name}) is not installed"
