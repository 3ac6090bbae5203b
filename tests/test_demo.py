"""``pe-dense demo``, the README's first command: quiet (a few lines per step, the frameworks' logs in files),
seeded, and printing the figures the README quotes."""
import os
import re
import subprocess
import sys

import pytest

pytest.importorskip("mmseg")

ROOT = os.path.join(os.path.dirname(__file__), "..")


def test_demo_is_quiet_seeded_and_prints_the_readme_figures(tmp_path):
    env = dict(os.environ, PE_DENSE_DATA=str(tmp_path / "data"))
    out = tmp_path / "demo"
    r = subprocess.run([sys.executable, "-m", "pe_dense.cli", "demo", "--out-dir", str(out)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    lines = r.stdout.splitlines()
    assert len(lines) < 60, r.stdout  # no config dumps: those are in the logs
    for name in ("mmseg_shapes", "mmseg_nyu_planes"):
        log = (out / name / "train.log").read_text()
        assert "Config:" in log and "Iter(train)" in log  # mmengine's full log, in its file
    readme = open(os.path.join(ROOT, "README.md")).read()
    for pattern in (r"J&F-Mean \d\.\d{3}", r"mIoU \d+\.\d  aAcc \d+\.\d", r"rmse \d\.\d{3}  d1 \d\.\d{3}  abs_rel \d\.\d{3}"):
        printed = re.search(pattern, r.stdout).group(0)
        assert f"`{printed}`" in readme, (printed, "the README quotes another figure")
