"""simtrain.scenario.files.memoized: sweeps find and read their input files once."""

from simtrain.scenario import files
from simtrain.scenario.files import memoized, read_toml, resolve_path


def test_memo_reads_once_hands_out_copies_and_ends_with_the_block(tmp_path, monkeypatch):
    f = tmp_path / "x.toml"
    f.write_text('a = 1\n[t]\nb = [1, 2]\n')
    with memoized():
        first = read_toml(f, "x")
        first["t"]["b"].append(3)  # callers may mutate what they get
        f.write_text("a = 2\n")  # (files must not change meanwhile: the memo answers)
        again = read_toml(f, "x")
        assert again == {"a": 1, "t": {"b": [1, 2]}}
        with memoized():  # nested: same memo
            assert read_toml(f, "x")["a"] == 1
        assert files._MEMO is not None
    assert files._MEMO is None
    assert read_toml(f, "x") == {"a": 2}


def test_memoized_lookups_equal_fresh_ones():
    fresh = resolve_path("megatron-core", "stacks", "stack", "cluster.stack")
    with memoized():
        assert resolve_path("megatron-core", "stacks", "stack", "cluster.stack") == fresh
        assert resolve_path("megatron-core", "stacks", "stack", "cluster.stack") == fresh
        assert files.available("devices") == files._available("devices")
