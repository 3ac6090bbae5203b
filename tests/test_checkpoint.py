"""Checkpoint formats, conversions and the errors a user meets."""
import pytest
import torch
import torch.nn.functional as F

import pe_dense
from pe_dense.checkpoint import CheckpointError


def released_file(tmp_path, name="PE-Spatial-T16-512", wrap="state_dict", prefix="visual.", **kw):
    m = pe_dense.create_model(name, **kw)
    sd = {prefix + k: v for k, v in m.state_dict().items()}
    path = tmp_path / f"{name}.pt"
    torch.save({wrap: sd} if wrap else sd, path)
    return m, path


@pytest.mark.parametrize("wrap,prefix", [(None, ""), ("state_dict", "visual."), ("model", "module."),
                                         ("state_dict", "module.visual.")])
def test_released_format_variants(tmp_path, wrap, prefix):
    src, path = released_file(tmp_path, wrap=wrap, prefix=prefix)
    dst = pe_dense.create_model("PE-Spatial-T16-512", pretrained=str(path))
    for k, v in src.state_dict().items():
        assert torch.equal(v, dst.state_dict()[k]), k


def test_safetensors(tmp_path):
    from safetensors.torch import save_file

    src = pe_dense.create_model("PE-Core-T16-384")
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    dst = pe_dense.load_checkpoint(pe_dense.create_model("PE-Core-T16-384"), str(path))
    assert torch.equal(src.conv1.weight, dst.conv1.weight)


def test_wrong_model_names_keys_and_the_model_it_looks_like(tmp_path):
    _, path = released_file(tmp_path, "PE-Core-T16-384")
    with pytest.raises(CheckpointError) as e:
        pe_dense.create_model("PE-Spatial-S16-512", pretrained=str(path))
    msg = str(e.value)
    assert "does not fit PE-Spatial-S16-512" in msg and "looks like PE-Core-T16-384" in msg
    assert "shape mismatch" in msg and "conv1.weight: checkpoint (192, 3, 16, 16) vs model (384, 3, 16, 16)" in msg


def test_missing_keys_are_named(tmp_path):
    m = pe_dense.create_model("PE-Spatial-T16-512")
    sd = {k: v for k, v in m.state_dict().items() if "resblocks.11." not in k}
    with pytest.raises(CheckpointError, match=r"missing keys \(\d+\): transformer.resblocks.11"):
        pe_dense.load_checkpoint(m, sd)


def test_truncated_file(tmp_path):
    _, path = released_file(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        pe_dense.create_model("PE-Spatial-T16-512", pretrained=str(path))


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"conv1.weight": torch.zeros(1)}, "obj": object()}, path)
    with pytest.raises(CheckpointError, match="Refused .*could run code"):
        pe_dense.create_model("PE-Spatial-T16-512", pretrained=str(path))


def test_hub_id_offline_says_where_to_put_the_file(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    want = r"facebook/PE-Spatial-T16-512.*pretrained='/path/to/PE-Spatial-T16-512.pt'"
    with pytest.raises(CheckpointError, match=want):
        pe_dense.create_model("PE-Spatial-T16-512", pretrained="facebook/PE-Spatial-T16-512")
    with pytest.raises(FileNotFoundError, match="no/such/file.pt"):
        pe_dense.create_model("PE-Spatial-T16-512", pretrained="no/such/file.pt")


def test_patch_14_to_16_and_tiled_table_as_the_detection_recipe(tmp_path):
    # a file in the layout of the released L and G ones (patch 14, 448 px: a 32 x 32 table) at T's width
    src, path = released_file(tmp_path, "PE-Spatial-T16-512", patch_size=14, img_size=448)
    m = pe_dense.create_model("PE-Spatial-T16-512", patch_size=16, img_size=512, pretrained=str(path),
                              out_indices=[0], window_size=32, global_blocks=(5, 11), pos_embed="tile")
    want = F.interpolate(src.conv1.weight, size=(16, 16), mode="bicubic", align_corners=False)
    assert torch.equal(m.conv1.weight, want)
    assert m.pos_grid == 32 and torch.equal(m.positional_embedding, src.positional_embedding)
    # at 1024 px the 32x32 table is tiled 2x2 (not interpolated)
    t = m.position_table(64, 64).reshape(64, 64, -1)
    table = src.positional_embedding[1:].reshape(32, 32, -1)
    assert torch.equal(t[:32, :32], table) and torch.equal(t[32:, 32:], table)


def test_table_resized_or_tiled_at_load_for_another_img_size(tmp_path):
    src, path = released_file(tmp_path)
    m = pe_dense.create_model("PE-Spatial-T16-512", img_size=1024, pretrained=str(path))
    assert m.positional_embedding.shape == (1 + 64 * 64, 192)
    table = src.positional_embedding[1:].reshape(1, 32, 32, -1).permute(0, 3, 1, 2)
    want = F.interpolate(table, size=(64, 64), mode="bilinear", align_corners=False)
    assert torch.allclose(m.positional_embedding[1:], want[0].flatten(1).T, atol=1e-6)
    assert torch.equal(m.positional_embedding[0], src.positional_embedding[0])
    t = pe_dense.create_model("PE-Spatial-T16-512", img_size=1024, pos_embed="tile", pretrained=str(path))
    tt = t.positional_embedding[1:].reshape(64, 64, -1)
    assert torch.equal(tt[32:, :32], src.positional_embedding[1:].reshape(32, 32, -1))


def test_class_token_checkpoint_into_a_windowed_model_drops_nothing_needed(tmp_path):
    _, path = released_file(tmp_path)
    m = pe_dense.create_model("PE-Spatial-T16-512", pretrained=str(path), window_size=8, global_blocks=(11,))
    assert not m.use_cls_token and not m.class_embedding.requires_grad
