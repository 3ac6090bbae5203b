"""DDP (gloo, 2 CPU processes) with everything that leaves parameters without gradients or changes the graph per
step: frozen blocks, a tap short of the last block, drop path, activation checkpointing, window attention. Plain
DDP (find_unused_parameters=False) must neither hang nor error, and the ranks must hold the same weights after."""
import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import pe_dense


def _worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    net = pe_dense.create_model("PE-Spatial-T16-512", out_indices=[3, 7], frozen_blocks=2, drop_path_rate=0.3,
                                act_checkpoint=True, window_size=4, global_blocks=[3, 7])
    fpn = pe_dense.SimpleFeaturePyramid(net, in_index=-1, out_channels=16)
    model = torch.nn.parallel.DistributedDataParallel(fpn)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    torch.manual_seed(100 + rank)  # different data and drop-path draws per rank
    for _ in range(3):
        out_maps = model(torch.randn(2, 3, 64, 64))
        loss = sum(v.float().pow(2).mean() for v in out_maps.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    flat = torch.cat([p.detach().flatten() for p in fpn.parameters()])
    gathered = [torch.zeros_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat)
    if rank == 0:
        torch.save(dict(diff=float((gathered[0] - gathered[1]).abs().max()), loss=float(loss)), out)
    dist.destroy_process_group()


def test_ddp_frozen_taps_drop_path_checkpointing(tmp_path):
    from procs import free_port

    port = int(free_port())
    out = str(tmp_path / "r.pt")
    ctx = mp.start_processes(_worker, args=(2, port, out), nprocs=2, join=False, start_method="spawn")
    import time

    deadline = time.time() + 3600  # a hang, not a slow machine: the step takes seconds even on a loaded one
    while not ctx.join(timeout=5):
        assert time.time() < deadline, "DDP training hung"
    r = torch.load(out)
    assert r["diff"] == 0.0 and torch.isfinite(torch.tensor(r["loss"]))
