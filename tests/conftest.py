import ctypes
import gc
import os

import pytest
import torch

# Threads: pytest.ini runs two xdist workers; on 2 cores each worker, and each process it starts (OMP_NUM_THREADS is
# inherited), takes one. Two OpenMP pools of 2 threads on 2 cores wait on each other (spinning): a test that took 122 s
# alone took 1479 s beside another run that way. Without xdist (-n 0, one test while working) a process takes 2.
THREADS = max(1, min(2, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))
torch.set_num_threads(THREADS)
os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(THREADS)



try:
    _LIBC = ctypes.CDLL("libc.so.6")
except OSError:  # not glibc
    _LIBC = None


@pytest.fixture(autouse=True)
def _seed_and_free():
    torch.manual_seed(0)
    yield
    # give the memory of the test's tensors back to the system: glibc keeps freed blocks below its (growing) mmap
    # threshold in the heap, so a worker that built one large tower after another held them all
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def pytest_collection_modifyitems(session, config, items):
    """The slow tests first (stable order otherwise): the two workers then share the long ones, and the run does not
    end with one worker on a two-minute test while the other waits."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


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


# PE_DENSE_MEMLOG=FILE: one line per test, its process's peak resident memory so far and now (MiB), to find the test
# that raises the suite's peak (`sort -k2 -n FILE | tail`)
_MEMLOG = os.environ.get("PE_DENSE_MEMLOG")


def pytest_runtest_teardown(item, nextitem):
    if _MEMLOG:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
        now = int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 2**20
        with open(_MEMLOG, "a") as f:
            f.write(f"{item.nodeid} {peak} {now} {children} {os.environ.get('PYTEST_XDIST_WORKER', 'main')}\n")
