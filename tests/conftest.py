import os

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))



@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# Under CI=true nothing may be skipped: a test (or a whole module, e.g. one whose framework is missing) that is
# skipped there never ran, so the run fails and names it.
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
_SKIPPED = []


def pytest_collectreport(report):
    if IN_CI and report.skipped:
        _SKIPPED.append(f"{report.nodeid}: {report.longrepr}")


def pytest_runtest_logreport(report):
    if IN_CI and report.skipped:
        _SKIPPED.append(f"{report.nodeid}: {report.longrepr}")


def pytest_sessionfinish(session, exitstatus):
    if IN_CI and _SKIPPED and session.exitstatus == 0:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter):
    if IN_CI and _SKIPPED:
        terminalreporter.write_line(f"CI=true: {len(_SKIPPED)} skipped test(s) count as failures (they never ran):",
                                    red=True)
        for line in _SKIPPED:
            terminalreporter.write_line("  " + line, red=True)


@pytest.fixture(scope="session")
def user_coco(tmp_path_factory):
    """A user's own COCO-format set (``tests/minidata.write_user_coco``) and the custom configs' overrides for it."""
    import sys

    sys.path.insert(0, os.path.dirname(__file__))
    from minidata import custom_overrides, write_user_coco

    files = write_user_coco(str(tmp_path_factory.mktemp("user_coco")))
    return files, custom_overrides(files)
