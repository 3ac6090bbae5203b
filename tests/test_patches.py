"""pe_dense replaces four private functions of the pinned Detectron2 and mmengine: each replacement is in effect (one
test per patch), and a changed upstream function stops with a message naming the pinned version."""
import os
import pickle

import pytest
import torch
from procs import free_port

from pe_dense.patches import UpstreamChangedError, replace, replaced


def test_a_changed_or_missing_upstream_function_is_refused_by_name():
    class Upstream:
        def load(self, path, strict):
            return "upstream"

    def mine(self, filename):
        return "mine"

    with pytest.raises(UpstreamChangedError, match=r"Upstream.load takes \(self, path, strict\).*lib==1.0"):
        replace(Upstream, "load", mine, ("self", "filename"), "lib==1.0")
    assert Upstream().load("x", True) == "upstream"  # left as it was
    with pytest.raises(UpstreamChangedError, match="_gone is not there.*lib==1.0"):
        replace(Upstream, "_gone", mine, ("self",), "lib==1.0")

    def mine2(self, path, strict):
        return "mine, then " + old(self, path, strict)

    old = replace(Upstream, "load", mine2, ("self", "path"), "lib==1.0")
    assert Upstream().load("x", True) == "mine, then upstream" and replaced(Upstream, "load")
    assert replace(Upstream, "load", mine, ("self", "path"), "lib==1.0") is old  # idempotent: the first one stays
    assert Upstream().load("x", True) == "mine, then upstream"


def test_detectron2_checkpointer_reads_files_without_running_code(tmp_path):
    pytest.importorskip("detectron2")
    from detectron2.checkpoint import DetectionCheckpointer

    import pe_dense.detectron2  # noqa: F401  (installs the replacement)

    assert replaced(DetectionCheckpointer, "_load_file")

    class Payload:
        def __reduce__(self):
            return (os.system, ("true",))

    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps({"model": Payload()}))
    from pe_dense.checkpoint import RefusedFileError

    with pytest.raises(RefusedFileError):
        DetectionCheckpointer(torch.nn.Linear(1, 1)).load(str(path))


def test_mmengine_history_buffer_saves_plainly_and_loads_with_weights_only(tmp_path):
    pytest.importorskip("mmseg")
    from mmengine.logging.history_buffer import HistoryBuffer

    import pe_dense.mmseg  # noqa: F401

    assert replaced(HistoryBuffer, "__getstate__")
    buf = HistoryBuffer()
    buf.update(3.0)
    assert "statistics_methods" not in buf.__getstate__()  # the default methods are not pickled (as getattr)
    torch.save({"buf": buf}, tmp_path / "ckpt.pth")
    back = torch.load(tmp_path / "ckpt.pth", weights_only=True)["buf"]
    assert back.current() == 3.0 and back.mean() == 3.0


@pytest.fixture
def one_process_group(monkeypatch):
    pytest.importorskip("mmseg")
    # the replacements act where there is no CUDA: on a CUDA machine too, the test runs them as a CPU machine would
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for k, v in dict(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), RANK="0", WORLD_SIZE="1",
                     LOCAL_RANK="0").items():
        monkeypatch.setenv(k, v)
    yield
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def test_mmengine_pytorch_launcher_uses_gloo_without_cuda(one_process_group):
    import mmengine.dist.utils as dist_utils

    import pe_dense.mmseg  # noqa: F401

    assert replaced(dist_utils, "_init_dist_pytorch")
    dist_utils._init_dist_pytorch("nccl")  # upstream would call torch.cuda.set_device and fail
    assert torch.distributed.get_backend() == "gloo"


def test_mmengine_ddp_wraps_a_cpu_model_with_syncbn(one_process_group):
    import mmengine.dist.utils as dist_utils
    from mmengine.model import MMDistributedDataParallel

    import pe_dense.mmseg  # noqa: F401

    assert replaced(MMDistributedDataParallel, "__init__")
    dist_utils._init_dist_pytorch("nccl")
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.SyncBatchNorm(4))
    ddp = MMDistributedDataParallel(module=model, device_ids=[0])  # upstream: a CPU module refuses device_ids
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in ddp.module.modules())
    assert ddp(torch.randn(2, 3, 4, 4)).shape == (2, 4, 4, 4)
