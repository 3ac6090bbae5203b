#!/usr/bin/env python
"""The mixed-precision / compile issue's GPU goals against what scripts/gpu_check.sh measured (its JSON files in
OUT_DIR): one Markdown table, each goal with the figure it is judged on, or "not run" where the step's file is
missing. The goals are ratios and MFU measured in the same run (MFU over the matrix-product peak measured there).

  python scripts/gpu_report.py out/
"""
import json
import os
import sys


def load(out, name):
    path = os.path.join(out, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def rows_of(res, mode, compiled=None):
    return [r for r in (res or {}).get("rows", [])
            if r["mode"] == mode and (compiled is None or r["compiled"] == compiled)]


def goals(out):
    """[(goal, measured, met: True/False/None)]."""
    eager = load(out, "l1022_bf16_eager.json")
    comp = load(out, "l1022_pure_bf16_compiled.json")
    vitdet = load(out, "l1024_vitdet.json")
    g = load(out, "g_detectron2_step.json")
    parity = load(out, "cuda_parity.json")
    res = []

    timm_fwd = rows_of(eager, "forward", False)
    fwd = [(f"{'compiled ' if r['compiled'] else ''}{src['precision']}", r["pe_dense"], r)
           for src in (eager, comp) if src for r in rows_of(src, "forward")]
    if fwd and timm_fwd:
        label, best, row = max(fwd, key=lambda t: t[1]["img_s"])
        t = timm_fwd[0]["timm"]
        res.append(("L forward at 1022: >= 60% MFU", f"{best['mfu']:.1%} ({label}, {best['img_s']:.1f} img/s)",
                    best["mfu"] >= 0.60))
        res.append(("L forward at 1022: >= 1.65x timm eager (bf16 autocast)",
                    f"{best['img_s'] / t['img_s']:.2f}x ({best['img_s']:.1f} vs {t['img_s']:.1f} img/s)",
                    best["img_s"] / t["img_s"] >= 1.65))
        ref_mem = row["timm"]["peak_mib"]  # timm in the same precision and mode as the best pe_dense row
        res.append(("L forward at 1022: peak memory <= timm's (same precision, same mode)",
                    f"{best['peak_mib']:.0f} vs {ref_mem:.0f} MiB ({label})", best["peak_mib"] <= ref_mem))
    else:
        res.append(("L forward at 1022: >= 60% MFU, >= 1.65x timm eager, peak <= timm's", "not run", None))
    bwd = [r["pe_dense"] for src in (eager, comp) if src for r in rows_of(src, "fwd+bwd")]
    if bwd:
        best = max(bwd, key=lambda o: o["mfu"])
        res.append(("L forward+backward at 1022: >= 50% MFU", f"{best['mfu']:.1%} ({best['img_s']:.1f} img/s)",
                    best["mfu"] >= 0.50))
    else:
        res.append(("L forward+backward at 1022: >= 50% MFU", "not run", None))
    if vitdet:
        r = rows_of(vitdet, "forward", False)[0]
        ratio = r["ratio"]
        flash = vitdet["args"]["sdpa"] == "flash"
        res.append(("ViTDet L at 1024: windowed attention on the flash kernel",
                    "ran with only the flash kernel allowed" if flash else "not checked (sdpa auto)",
                    True if flash else None))
        res.append(("ViTDet L at 1024: forward >= 1.3x the same model with global attention",
                    f"{ratio:.2f}x ({r['pe_dense']['img_s']:.1f} vs {r['pe_dense global']['img_s']:.1f} img/s)",
                    ratio >= 1.3))
    else:
        res.append(("ViTDet L at 1024: flash kernel, >= 1.3x global attention", "not run", None))
    if g and g.get("peak_gib") is not None:
        res.append(("G Mask R-CNN recipe, Detectron2 step at 1024, batch 1: <= 40 GiB",
                    f"{g['peak_gib']:.1f} GiB, {g['s_per_it']:.2f} s/it ({g.get('trainer')}, {g['amp']} AMP)",
                    g["peak_gib"] <= 40))
    else:
        res.append(("G Mask R-CNN recipe, Detectron2 step at 1024, batch 1: <= 40 GiB", "not run (or not on a GPU)",
                    None))
    if parity:
        worst_cos = min(r["bf16_cosine"] for r in parity["rows"])
        worst_c = max(r["compiled_max_abs"] for r in parity["rows"])
        res.append(("CUDA: bf16 autocast taps cosine >= 0.9995 vs fp32", f"{worst_cos:.6f}", worst_cos >= 0.9995))
        res.append(("CUDA: compiled (fullgraph) fp32 taps within 1e-4 of eager", f"{worst_c:.1e}", worst_c <= 1e-4))
    else:
        res.append(("CUDA parity of bf16 autocast and compiled", "not run", None))
    return res, [src for src in (eager, comp, vitdet) if src]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or not os.path.isdir(argv[0]):
        sys.exit("usage: python scripts/gpu_report.py OUT_DIR (the folder scripts/gpu_check.sh wrote)")
    res, srcs = goals(argv[0])
    dev = srcs[0]["device"] if srcs else "unknown device"
    torch_v = srcs[0]["torch"] if srcs else "?"
    peak = f", matrix-product peak measured {srcs[0]['peak_tflops_measured']:.4g} TFLOP/s" if srcs else ""
    print(f"GPU goals, {dev}, torch {torch_v}{peak}\n")
    print("| goal | measured | met |\n|---|---|---|")
    for goal, measured, met in res:
        print(f"| {goal} | {measured} | {'-' if met is None else ('yes' if met else 'NO')} |")


if __name__ == "__main__":
    main()
