"""The tracking part of ``pe-dense demo``."""
import argparse

from .cli import BUILTIN, add_track_arguments, run_track


def run_demo(out_dir: str):
    p = argparse.ArgumentParser()
    add_track_arguments(p)
    args = p.parse_args(["--davis", BUILTIN, "--out", out_dir, "--short-side", "240"])
    return run_track(args)
