"""Measurements of pe_dense.features (the README's figures come from here; nothing here is a test):

  python tools/benchmark_features.py speed       # images/s for a folder at 512 px (T, B); one 4096 px image tiled
  python tools/benchmark_features.py memory      # peak RSS of tiled extraction at two image sizes (subprocesses)
  python tools/benchmark_features.py seams       # seam ratio across tile borders: plain averaging vs blending
  python tools/benchmark_features.py upsample    # embedded segmentation set, linear head at pixel resolution:
                                                 # mIoU and boundary F for bilinear vs guided features (+ a picture)
  python tools/benchmark_features.py guided-memory   # guided upsampling of 1536-channel features to 1036 px: peak RSS

Each prints its table and the machine; ``--json FILE`` also writes the figures.
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import pe_dense  # noqa: E402
from pe_dense.data.images import shapes_image  # noqa: E402
from pe_dense.features import (  # noqa: E402
    extract_features,
    tiled_features,
    upsample,
)
from pe_dense.io import write_json  # noqa: E402
from pe_dense.modeling.windows import border_step_ratio, window_borders, window_starts  # noqa: E402


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"


def speed(a):
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for i in range(a.images):
            shapes_image((512, 683), seed=i).save(os.path.join(d, f"{i:03d}.png"))
        for name in ("PE-Spatial-T16-512", "PE-Spatial-B16-512"):
            tower = pe_dense.create_model(name).eval()
            extract_features([d], tower=tower, size=512, batch_size=a.batch, progress=False)  # warm-up
            t0 = time.time()
            extract_features([d], tower=tower, size=512, batch_size=a.batch, progress=False)
            dt = time.time() - t0
            rows.append(dict(what=f"{name}, folder of {a.images} at 512 px (short side), batch {a.batch}",
                             img_s=a.images / dt))
    tower = pe_dense.create_model("PE-Spatial-T16-512").eval()
    base = np.asarray(shapes_image((512, 512), seed=0))
    tile, overlap = a.tile, a.overlap
    for side in (2048, 4096):
        img = np.tile(base, (side // 512, side // 512, 1))
        n = len(window_starts(side // 16, tile // 16, (tile - overlap) // 16)) ** 2
        t0 = time.time()
        tiled_features(tower, img, tile=tile, overlap=overlap)
        dt = time.time() - t0
        rows.append(dict(what=f"PE-Spatial-T16-512, one {side}x{side} image, tile {tile} overlap {overlap} "
                              f"({n} tiles)", seconds=dt, tiles=n, s_per_tile=dt / n))
    for r in rows:
        print(r["what"] + ": " + (f"{r['img_s']:.2f} img/s" if "img_s" in r else
                                  f"{r['seconds']:.1f} s, {r['s_per_tile']:.2f} s per tile"))
    return rows


def _one_memory(side: int, tile: int):
    base = np.asarray(shapes_image((512, 512), seed=0))  # repeated: the image is built in uint8, not in float
    img = np.tile(base, (side // 4 * 3 // 512 + 1, side // 512 + 1, 1))[: side // 4 * 3, :side]
    tower = pe_dense.create_model("PE-Spatial-T16-512").eval()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    feats = tiled_features(tower, img, tile=tile, overlap=tile // 4)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out_mb = sum(f.numel() * 4 for f in feats) / 2**20
    print(f"{side}x{side // 4 * 3} (W x H): peak RSS {peak / 1024:.0f} MiB (before the tiles {before / 1024:.0f} "
          f"MiB; the image {side * side // 4 * 3 * 3 / 2**20:.0f} MiB uint8, the output {out_mb:.0f} MiB)")


def memory(a):
    rows = []
    for side in (2048, 8192):
        out = subprocess.run([sys.executable, __file__, "_memory", str(side), str(a.tile)], capture_output=True,
                             text=True, check=True).stdout.strip()
        print(out)
        rows.append(out)
    return rows


def seams(a):
    img = shapes_image((768, 1024), seed=0)
    rows = []
    for name, kw in (("PE-Spatial-T16-512", {}), ("PE-Spatial-T16-512 windowed (3, global 11)",
                                                  dict(window_size=3, global_blocks=[11]))):
        torch.manual_seed(0)
        tower = pe_dense.create_model("PE-Spatial-T16-512", **kw).eval()
        with torch.no_grad():
            from pe_dense.data.images import normalize

            whole = tower(normalize(img)[None])[0][0]
        step = (a.tile - a.overlap) // 16
        by, bx = window_borders(48, a.tile // 16, step), window_borders(64, a.tile // 16, step)
        r = dict(what=name, whole=border_step_ratio(whole, by, bx))
        for blend in ("mean", "ramp"):
            r[blend] = border_step_ratio(tiled_features(tower, img, a.tile, a.overlap, blend)[0], by, bx)
        print(f"{name}, 768x1024, tile {a.tile} overlap {a.overlap}: change across tile borders / inside tiles: "
              f"plain averaging {r['mean']:.3f}, blended {r['ramp']:.3f} (the whole forward at the same borders: "
              f"{r['whole']:.3f})")
        rows.append(r)
    return rows


def guided_memory(a):
    """Guided upsampling of PE-G-width features (1536 channels, 74 x 74 cells: a 1036 px image at patch 14) to
    stride 1, fp16 output: peak RSS (a subprocess) and time."""
    out = subprocess.run([sys.executable, __file__, "_guided"], capture_output=True, text=True, check=True).stdout
    print(out.strip())
    return [out.strip()]


def _one_guided():
    from pe_dense.features import guided_upsample

    img = np.asarray(shapes_image((1036, 1036)))
    f = torch.randn(1536, 74, 74, generator=torch.Generator().manual_seed(0))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.time()
    out = guided_upsample(f, img, 14, 1, out_dtype=torch.float16)
    print(f"guided, 1536 channels, 1036 x 1036 px at stride 1: output {out.numel() * 2 / 2**30:.2f} GiB fp16; peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB (before {before / 2**20:.2f}); "
          f"{time.time() - t0:.0f} s")


def _boundary_f(pred: np.ndarray, gt: np.ndarray, classes) -> float:
    from pe_dense.tracking.metrics import f_measure

    scores = [float(f_measure(pred == c, gt == c)) for c in classes if (gt == c).any()]
    return float(np.mean(scores)) if scores else 0.0


def upsample_eval(a):
    """Linear head trained on patch features (logits upsampled bilinearly, as the probe), evaluated with the
    features brought to pixel resolution by each upsampler before the head."""
    from PIL import Image

    from pe_dense.modeling.heads import LinearSegHead
    from pe_dense.probe.data import embedded, load_label, seg_splits

    root = embedded("seg")
    splits = seg_splits(root)
    size = 128
    torch.manual_seed(0)
    tower = pe_dense.create_model(a.model, out_indices=[a.block]).eval()

    def feats(samples):
        out = []
        for s in samples:
            img = Image.open(s.image).convert("RGB").resize((size, size), Image.BICUBIC)
            r = extract_features([s.image], tower=tower, blocks=[a.block], size=size, progress=False)[0]
            out.append((img, r.features[tower.out_indices[0]], load_label("seg", s.label, size)))
        return out

    # the probe crops square: here the embedded set is square already (128 x 128)
    train, val = feats(splits["training"]), feats(splits["validation"])
    k = int(max(int(t[2].max()) for t in train + val)) + 1
    head = LinearSegHead([train[0][1].shape[0]], k)
    opt = torch.optim.AdamW(head.parameters(), lr=1e-2, weight_decay=1e-4)
    for _ in range(a.epochs):
        for i in range(0, len(train), 8):
            x = torch.stack([t[1] for t in train[i: i + 8]])
            y = torch.stack([t[2] for t in train[i: i + 8]])
            out = F.interpolate(head([x]), size=y.shape[-2:], mode="bilinear", align_corners=False)
            loss = F.cross_entropy(out, y, ignore_index=-1)
            opt.zero_grad()
            loss.backward()
            opt.step()
    head.eval()
    rows, pictures = [], {}
    for mode in ("logits-bilinear", "bilinear", "guided"):
        conf = torch.zeros(k, k, dtype=torch.long)
        bf = []
        for j, (img, f, y) in enumerate(val):
            with torch.no_grad():
                if mode == "logits-bilinear":
                    logits = F.interpolate(head([f[None]]), size=y.shape, mode="bilinear", align_corners=False)[0]
                else:
                    logits = head([upsample(f, img, tower.patch_size, 1, mode)[None]])[0]
            pred = logits.argmax(0)
            keep = y >= 0
            conf += torch.bincount(y[keep] * k + pred[keep], minlength=k * k).view(k, k)
            bf.append(_boundary_f(pred.numpy(), y.numpy(), range(k)))
            if j == 0:
                pictures[mode] = pred.numpy()
        inter = conf.diag().float()
        union = conf.sum(0).float() + conf.sum(1).float() - inter
        miou = float((inter[union > 0] / union[union > 0]).mean() * 100)
        rows.append(dict(mode=mode, mIoU=miou, boundary_F=float(np.mean(bf))))
        print(f"{mode:>16}: mIoU {miou:.1f}, boundary F {np.mean(bf):.3f}")
    if a.picture:
        from pe_dense.data.seg_depth import SHAPES_PALETTE

        img, _, y = val[0]
        pal = np.array(SHAPES_PALETTE + [(0, 0, 0)] * 256, dtype=np.uint8)
        tiles = [np.asarray(img)] + [pal[np.where(v < 0, len(SHAPES_PALETTE), v)] for v in
                                     (y.numpy(), pictures["bilinear"], pictures["guided"])]
        Image.fromarray(np.concatenate(tiles, 1)).resize((4 * size * 2, size * 2), Image.NEAREST).save(a.picture)
        print(f"wrote {a.picture} (image | label | bilinear | guided)")
    return rows


def main(argv=None):
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "_memory":
        return _one_memory(int(sys.argv[2]), int(sys.argv[3]))
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "_guided":
        return _one_guided()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["speed", "memory", "seams", "upsample", "guided-memory"])
    ap.add_argument("--images", type=int, default=16, help="speed: images in the folder")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--overlap", type=int, default=64)
    ap.add_argument("--model", default="PE-Spatial-T16-512")
    ap.add_argument("--block", type=int, default=-1)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--picture", help="upsample: write image | label | bilinear | guided here")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    print(f"machine: {machine()}")
    rows = {"speed": speed, "memory": memory, "seams": seams, "upsample": upsample_eval,
            "guided-memory": guided_memory}[a.what](a)
    if a.json:
        write_json(a.json, dict(what=a.what, machine=machine(), rows=rows, args=vars(a)))
    return rows


if __name__ == "__main__":
    main()
