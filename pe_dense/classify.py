"""``pe-dense classify``: zero-shot classification of images with PE-Core as CLIP (a check that the image and text
towers and their heads are wired right, and a tool on its own): each image through the released transform (squashed
to the model's size), each class through the prompt ensemble, softmax over ``exp(logit_scale)`` x cosine."""
from __future__ import annotations

import time
from typing import List, Optional, Sequence

import torch

from .clip import create_clip, image_transform, parse_classes, templates, zero_shot_weights
from .data.images import load_image
from .errors import PEDenseError
from .features import find_images
from .io import error_summary, write_csv


def classify(inputs: Sequence[str], classes, model: str = "PE-Core-T16-384", checkpoint: Optional[str] = None,
             prompts: str = "imagenet80", top_k: int = 5, out: Optional[str] = "classify.csv", batch_size: int = 16,
             device: str = "cpu", size: Optional[int] = None, quiet: bool = False) -> List[dict]:
    """Returns one record per readable image: ``file``, ``top`` [(class, probability), ...] (``top_k`` of them) and
    ``probs`` (every class); writes them to ``out`` (CSV: file, then class / probability pairs) unless None."""
    from tqdm import tqdm

    names = parse_classes(classes)
    files = [f for f in find_images(inputs) if not f.startswith("builtin:")]
    if not files:
        raise PEDenseError("no image files to classify (give files, folders or globs)")
    top_k = min(top_k, len(names))
    net = create_clip(model, pretrained=checkpoint or None).to(device).eval()
    if not checkpoint and not quiet:
        print(f"note: {model} with random weights (give --checkpoint for the released ones): the labels are noise")
    t0 = time.time()
    text = zero_shot_weights(net, names, templates(prompts))
    transform = image_transform(size or net.visual.pos_grid * net.visual.patch_size)
    records, unreadable = [], []
    bar = tqdm(total=len(files), desc="classify", unit="img", disable=quiet)
    for i in range(0, len(files), batch_size):
        batch, paths = [], []
        for f in files[i:i + batch_size]:
            try:
                batch.append(transform(load_image(f)))
                paths.append(f)
            except (OSError, PEDenseError) as e:
                unreadable.append(f)
                print(f"skipped {f}: {error_summary(e)}")
        if batch:
            with torch.no_grad():
                img = net.encode_image(torch.stack(batch).to(device), normalize=True)
                probs = (net.logit_scale.exp() * img @ text.t()).softmax(-1).cpu()
            for f, p in zip(paths, probs):
                v, j = p.topk(top_k)
                records.append(dict(file=f, top=[(names[k], float(x)) for x, k in zip(v, j)], probs=p.tolist()))
                if not quiet:
                    tqdm.write(f"{f}: " + ", ".join(f"{n} {x:.3f}" for n, x in records[-1]["top"]))
        bar.update(len(files[i:i + batch_size]))
    bar.close()
    if out:
        header = ["file"] + [h for r in range(1, top_k + 1) for h in (f"class_{r}", f"prob_{r}")]
        write_csv(out, header, [[r["file"]] + [x for n, p in r["top"] for x in (n, f"{p:.6f}")] for r in records])
    if not quiet:
        print(f"classified {len(records)} image(s) into {len(names)} classes in {time.time() - t0:.1f} s"
              + (f"; wrote {out}" if out else "") + (f"; {len(unreadable)} unreadable (named above)"
                                                     if unreadable else ""))
    return records
