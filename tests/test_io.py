"""The ground floor (pe_dense.io): whole-or-nothing writes, the weights identity, the argparse types."""
import argparse
import json
import os
import time

import pytest
import torch

from pe_dense.errors import PEDenseError
from pe_dense.io import (
    error_summary,
    int_list,
    positive,
    temp_path,
    weights_identity,
    write_atomic,
    write_folder_atomic,
    write_json,
)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "out.json"
    write_json(str(path), {"a": 1})

    def half(tmp):
        with open(tmp, "w") as f:
            f.write('{"a": ')  # cut short
        raise KeyboardInterrupt  # an interrupted run, not only an error

    with pytest.raises(KeyboardInterrupt):
        write_atomic(str(path), half)
    assert json.loads(path.read_text()) == {"a": 1}
    assert sorted(os.listdir(tmp_path)) == ["out.json"]


def test_a_write_replaces_the_file_whole_and_creates_its_folder(tmp_path):
    path = tmp_path / "new" / "deeper" / "out.json"
    write_json(str(path), {"a": 1})
    write_json(str(path), {"b": [1, 2]})
    assert json.loads(path.read_text()) == {"b": [1, 2]}
    assert os.listdir(path.parent) == ["out.json"]


def test_a_failed_folder_leaves_the_old_folder_and_no_temporary(tmp_path):
    folder = tmp_path / "masks"

    def fill(n):
        def go(tmp):
            for i in range(n):
                with open(os.path.join(tmp, f"{i}.png"), "w") as f:
                    f.write(str(i))
        return go

    write_folder_atomic(str(folder), fill(3))
    assert sorted(os.listdir(folder)) == ["0.png", "1.png", "2.png"]

    def broken(tmp):
        with open(os.path.join(tmp, "0.png"), "w") as f:
            f.write("new")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_folder_atomic(str(folder), broken)
    assert sorted(os.listdir(folder)) == ["0.png", "1.png", "2.png"]
    assert (folder / "0.png").read_text() == "0"
    assert os.listdir(tmp_path) == ["masks"]
    write_folder_atomic(str(folder), fill(1))  # a finished fill replaces the folder, old files and all
    assert os.listdir(folder) == ["0.png"]


def test_temporaries_are_hidden_beside_their_destination_and_unique(tmp_path):
    a, b = temp_path(str(tmp_path / "x.pt")), temp_path(str(tmp_path / "x.pt"))
    assert a != b
    assert os.path.dirname(a) == str(tmp_path) and os.path.basename(a).startswith(".x.pt.tmp-")


def test_weights_identity_tells_files_hub_ids_memory_and_random_init_apart(tmp_path):
    f = tmp_path / "w.pt"
    f.write_bytes(b"1")
    first = weights_identity(str(f))
    assert str(f) in first and "1 bytes" in first
    os.utime(f, (time.time() + 10, time.time() + 10))  # re-trained at the same path
    assert weights_identity(str(f)) != first
    assert weights_identity("facebook/PE-Spatial-T16-512") == "facebook/PE-Spatial-T16-512"
    assert weights_identity(None) == "random init"
    m = torch.nn.Linear(2, 2)
    one = weights_identity(model=m)
    assert one == weights_identity(model=m)
    with torch.no_grad():
        m.weight[0, 0] += 1
    assert weights_identity(model=m) != one


def test_argparse_types_and_error_summary():
    assert positive(int)("3") == 3 and positive(float)("0.5") == 0.5
    for bad in ("0", "-1", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            positive(int)(bad)
    assert int_list("2,5, 8 11") == [2, 5, 8, 11] and int_list("") == []
    with pytest.raises(argparse.ArgumentTypeError, match="whole numbers"):
        int_list("2,x")
    assert error_summary(OSError("no space\nmore")) == "OSError: no space"
    assert error_summary(PEDenseError("bad size")) == "PEDenseError: bad size"
    assert str(PEDenseError("quoted?")) == "quoted?" and isinstance(PEDenseError("x"), ValueError)
