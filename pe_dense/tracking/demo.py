"""The tracking part of ``pe-dense demo``."""
from .cli import BUILTIN, track


def run_demo(out_dir: str):
    """Label propagation on the embedded DAVIS-style video (short side 240 px); J&F beside the first mask held still."""
    return track(davis=BUILTIN, out=out_dir, short_side=240)
