#!/usr/bin/env python
"""Detectron2 LazyConfig training / evaluation with PE backbones (Detectron2's ``lazyconfig_train_net.py`` flow).

  python tools/train_net.py --config-file configs/detectron2/COCO/mask_rcnn_pe_spatial_b_100ep.py --num-gpus 8
  python tools/train_net.py --config-file ... --resume                       # continue from the last checkpoint
  python tools/train_net.py --config-file ... --eval-only train.init_checkpoint=output/model_final.pth
  python tools/train_net.py --config-file configs/detectron2/shapes/mask_rcnn_pe_spatial_t_shapes.py  # embedded
  python tools/train_net.py --config-file ... --check-data   # build the train/test loaders, load one batch, exit
  python tools/train_net.py --config-file configs/detectron2/custom/mask_rcnn_pe_spatial_b_custom.py \
      dataset.train_json=A.json dataset.train_images=DIR dataset.val_json=B.json dataset.val_images=DIR  # your data

Mixed precision: the recipes train with Detectron2's ``AMPTrainer`` (``train.amp.enabled=True``, fp16 autocast with
loss scaling, as the released PE recipe); ``train.amp.precision=bfloat16`` autocasts to bf16 instead (no loss
scaling). AMPTrainer needs CUDA: on the CPU the run is fp32 (a warning says so).

``train.init_checkpoint`` may be PE weights (hub id, released .pt, timm, safetensors: loaded into the backbone's
ViT through ``pe_dense.load_checkpoint``, patch 14 -> 16 and position table handled there) or a Detectron2
checkpoint of the whole model (loaded by ``DetectionCheckpointer``). After evaluation, pictures of predictions on a
few test images are written to ``OUTPUT_DIR/vis/`` with Detectron2's ``Visualizer``.
"""
import logging
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402
from detectron2.config import LazyConfig, instantiate  # noqa: E402
from detectron2.engine import default_argument_parser, default_setup, default_writers, hooks, launch  # noqa: E402
from detectron2.evaluation import inference_on_dataset, print_csv_format  # noqa: E402
from detectron2.utils import comm  # noqa: E402

from pe_dense.checkpoint import hub_name  # noqa: E402
from pe_dense.detectron2.train import (  # noqa: E402
    SafeCheckpointer,
    allow_detectron2_checkpoints,
    amp_precision,
    build_trainer,
    create_ddp_model,
    init_weights,
    refuse_overwrite,
    visualize,
)
from pe_dense.errors import PEDenseError  # noqa: E402

logger = logging.getLogger("detectron2")


def do_test(cfg, model, tta: bool = False):
    """The evaluation; ``tta``: through Detectron2's GeneralizedRCNNWithTTA (pe_dense.detectron2.tta)."""
    if "evaluator" in cfg.dataloader:
        from pe_dense.detectron2.tta import describe_tta, with_tta

        run = with_tta(cfg, model) if tta else model
        if tta:
            print(describe_tta(cfg, model))
        ret = inference_on_dataset(run, instantiate(cfg.dataloader.test), instantiate(cfg.dataloader.evaluator))
        print_csv_format(ret)
        if comm.is_main_process():
            visualize(cfg, model, os.path.join(cfg.train.output_dir, "vis"))
        return ret


def do_train(args, cfg):
    model = instantiate(cfg.model)
    logger.info("Model:\n{}".format(model))
    model.to(cfg.train.device)
    cfg.optimizer.params.model = model
    optim = instantiate(cfg.optimizer)
    train_loader = instantiate(cfg.dataloader.train)
    model = create_ddp_model(model, **cfg.train.ddp)
    trainer = build_trainer(cfg, model, train_loader, optim)  # AMPTrainer (train.amp.precision) or SimpleTrainer
    checkpointer = SafeCheckpointer(model, cfg.train.output_dir, trainer=trainer)
    trainer.register_hooks([
        hooks.IterationTimer(),
        hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
        hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer) if comm.is_main_process() else None,
        hooks.EvalHook(cfg.train.eval_period, lambda: do_test(cfg, model)),
        hooks.PeriodicWriter(default_writers(cfg.train.output_dir, cfg.train.max_iter),
                             period=cfg.train.log_period) if comm.is_main_process() else None,
    ])
    if args.resume and checkpointer.resume():
        start_iter = trainer.iter + 1  # the checkpoint stores the iteration that just finished
    else:
        init_weights(model, checkpointer, cfg.train.init_checkpoint)
        start_iter = 0
    trainer.train(start_iter, cfg.train.max_iter)


def check_data(cfg):
    """Checks the annotation files, builds the train and test dataloaders as the config says and loads one batch
    of each (no model)."""
    from pe_dense.detectron2.custom import check_dataset

    for key in ("train", "test"):
        for name in check_dataset(cfg.dataloader[key].dataset):
            print(f"check-data: {name}: annotation file checked (images, categories, image ids, polygons)")
    for key in ("train", "test"):
        loader = instantiate(cfg.dataloader[key])
        batch = next(iter(loader))
        sizes = sorted({tuple(d["image"].shape[-2:]) for d in batch})
        n_inst = sum(len(d["instances"]) for d in batch if "instances" in d)
        print(f"check-data: dataloader.{key} ({cfg.dataloader[key].dataset.names}): a batch of {len(batch)} "
              f"image(s), sizes {sizes}" + (f", {n_inst} instances" if key == "train" else ""))
    print("check-data: ok")


def _exit_with(error):
    """One line on stderr, exit status 2: how every refused input ends."""
    print(f"train_net: error: {error}", file=sys.stderr)
    raise SystemExit(2)


def preflight(args):
    """Before anything is written or any process starts: the output dir (no silent overwrite) and the datasets'
    annotation files (images on disk, categories, image ids, polygons), so that a bad file stops the run at once
    rather than at the final evaluation. Exits with status 2 and one message."""
    from pe_dense.detectron2.custom import check_dataset, describe

    try:  # loading the config registers its datasets (the embedded one checks its files there)
        cfg = LazyConfig.apply_overrides(LazyConfig.load(args.config_file), args.opts)
    except (FileNotFoundError, ValueError) as e:
        _exit_with(e)
    if args.tta and not args.eval_only:
        _exit_with(ValueError("--tta goes with --eval-only: evaluate a trained model with test-time augmentation "
                              "(training's own evaluation runs without it)"))
    if not args.eval_only:
        refuse_overwrite(cfg.train.output_dir, args.resume)
    start = str(cfg.train.get("init_checkpoint", "") or "")
    if (start and not args.resume and "://" not in start and not os.path.exists(os.path.expanduser(start))
            and not hub_name(start)):  # URLs (detectron2://, https://) are Detectron2's to fetch
        stage = ("; it names a training run's output: a stage of a multi-stage recipe (see the config's docstring) "
                 "starts from the previous stage's model_final.pth, so run that stage first" if "model_final" in start
                 else "")
        _exit_with(FileNotFoundError(
            f"train.init_checkpoint={start}: no such file{stage}. Set train.init_checkpoint=PATH (a Detectron2 "
            f"checkpoint of the model, PE weights, or a released model name such as PE-Spatial-T16-512)"))
    keys = ("test",) if args.eval_only else ("train", "test")
    try:
        amp_precision(cfg)  # a wrong train.amp.precision raises ValueError
        for key in keys:
            if key in cfg.dataloader:
                check_dataset(cfg.dataloader[key].dataset)
        if "json_file" in cfg.dataloader.train.dataset and not args.eval_only:
            print(describe(cfg))
    except (FileNotFoundError, ValueError) as e:
        _exit_with(e)


def main(args):
    allow_detectron2_checkpoints()
    if args.check_data:
        try:
            return check_data(LazyConfig.apply_overrides(LazyConfig.load(args.config_file), args.opts))
        except (FileNotFoundError, ValueError) as e:
            _exit_with(e)
    cfg = LazyConfig.load(args.config_file)
    cfg = LazyConfig.apply_overrides(cfg, args.opts)
    default_setup(cfg, args)
    if not torch.cuda.is_available() and str(cfg.train.device).startswith("cuda"):
        logger.warning("no GPU: running on the CPU (train.device=cpu, AMP off)")
        cfg.train.device = "cpu"
        cfg.train.amp.enabled = False
    if str(cfg.train.device).startswith("cpu") and cfg.train.amp.enabled:
        logger.warning("train.device=cpu: AMP off (Detectron2's AMPTrainer needs CUDA)")
        cfg.train.amp.enabled = False
    if args.eval_only:
        model = instantiate(cfg.model)
        model.to(cfg.train.device)
        model = create_ddp_model(model)
        try:  # a trained detector, whole (ours or the released layout), or one error before any evaluation
            init_weights(model, SafeCheckpointer(model), cfg.train.init_checkpoint, whole=True)
        except PEDenseError as e:
            _exit_with(e)
        print(do_test(cfg, model, tta=args.tta))
    else:
        do_train(args, cfg)


def build_parser():
    parser = default_argument_parser()
    parser.add_argument("--check-data", action="store_true",
                        help="build the train and test dataloaders, load one batch of each, and exit")
    parser.add_argument("--tta", action="store_true", help="with --eval-only: evaluate with test-time augmentation "
                                                           "(GeneralizedRCNNWithTTA: test scales 0.75 and 1, flip; "
                                                           "DETA: the released TTA, see the config's tta)")
    return parser


def invoke_main():
    args = build_parser().parse_args()
    if not args.check_data:
        preflight(args)  # once, before the processes start
    launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
           dist_url=args.dist_url, args=(args,))


if __name__ == "__main__":
    invoke_main()
