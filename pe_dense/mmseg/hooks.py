"""``PEProgressHook``: one progress bar for a training run (the ``pe-dense demo`` runs keep mmengine's log in a
file and show this on the terminal instead)."""
import sys

from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class PEProgressHook(Hook):
    """A tqdm bar over the training iterations, on the process's original stderr (so that it shows while stdout
    and stderr go to a log file), with the last loss."""

    priority = "VERY_LOW"

    def __init__(self, desc: str = "training"):
        self.desc = desc
        self.bar = None

    def before_train(self, runner):
        from tqdm import tqdm

        self.bar = tqdm(total=runner.max_iters, initial=runner.iter, desc=self.desc, unit="it", file=sys.__stderr__,
                        leave=True, dynamic_ncols=True)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if self.bar is not None:
            loss = (outputs or {}).get("loss")
            if loss is not None:
                self.bar.set_postfix(loss=f"{float(loss):.3f}", refresh=False)
            self.bar.update(1)

    def after_train(self, runner):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
