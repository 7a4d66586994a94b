"""The data step and the data set: fetching, verifying, counting, splitting, batching."""

import hashlib

import pytest
import torch

from backprop_ninja import data
from backprop_ninja.data import DataError, Vocabulary, build_dataset, fetch_names, split_dataset


def write(path, text: str):
    path.write_text(text)
    return path


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# ------------------------------------------------------------------------- fetching
def test_fetch_copies_a_verified_local_copy(tmp_path):
    local = write(tmp_path / "local.txt", "emma\nolivia")
    dest = fetch_names(
        tmp_path / "out" / "names.txt", local_copy=local, url="unused", sha256=sha("emma\nolivia")
    )
    assert dest.read_text() == "emma\nolivia"


def test_fetch_downloads_when_there_is_no_local_copy(tmp_path):
    remote = write(tmp_path / "remote.txt", "ava")
    dest = fetch_names(
        tmp_path / "names.txt", local_copy=tmp_path / "missing.txt", url=remote.as_uri(), sha256=sha("ava")
    )
    assert dest.read_text() == "ava"


def test_fetch_refuses_a_file_with_the_wrong_checksum_and_leaves_nothing(tmp_path):
    local = write(tmp_path / "local.txt", "not the names")
    dest = tmp_path / "names.txt"
    with pytest.raises(DataError, match="make data"):
        fetch_names(dest, local_copy=local, url="unused", sha256=sha("emma"))
    assert not dest.exists()
    assert not dest.with_suffix(".part").exists()


def test_fetch_explains_a_failed_download(tmp_path):
    dest = tmp_path / "names.txt"
    with pytest.raises(DataError, match="could not download"):
        fetch_names(dest, local_copy=None, url=(tmp_path / "nowhere.txt").as_uri(), sha256=sha(""))
    assert not dest.exists()


def test_fetch_replaces_a_corrupted_destination(tmp_path):
    dest = write(tmp_path / "names.txt", "corrupted")
    local = write(tmp_path / "local.txt", "mia")
    fetch_names(dest, local_copy=local, url="unused", sha256=sha("mia"))
    assert dest.read_text() == "mia"


def test_cli_reports_errors_without_a_traceback(tmp_path, capsys):
    status = data.main(
        [
            "--dest",
            str(tmp_path / "n.txt"),
            "--local-copy",
            str(tmp_path / "none"),
            "--url",
            (tmp_path / "nowhere").as_uri(),
        ]
    )
    assert status == 1
    assert capsys.readouterr().err.startswith("error: could not download")


def test_reading_a_missing_file_says_run_make_data(tmp_path):
    with pytest.raises(DataError, match="make data"):
        data.read_names(tmp_path / "absent.txt")


# ---------------------------------------------------------------------- small data
def test_vocabulary_puts_the_dot_first_then_sorted_characters():
    vocab = Vocabulary.from_words(["bob", "ada"])
    assert vocab.itos == (".", "a", "b", "d", "o")
    assert vocab.encode("ab.") == [1, 2, 0]
    assert vocab.decode([4, 2]) == "ob"


def test_build_dataset_slides_a_padded_context_over_each_word():
    vocab = Vocabulary.from_words(["ab"])
    X, Y = build_dataset(["ab"], vocab, block_size=3)
    assert X.tolist() == [[0, 0, 0], [0, 0, 1], [0, 1, 2]]
    assert Y.tolist() == [1, 2, 0]
    assert X.dtype == Y.dtype == torch.long


def test_split_is_80_10_10_of_the_words_and_reproducible():
    words = [f"{chr(97 + i % 26)}{chr(97 + i // 26)}" for i in range(100)]
    a, b = split_dataset(words), split_dataset(words)
    assert torch.equal(a.Xtr, b.Xtr)
    # every two-letter word gives three examples
    assert (a.Xtr.shape[0], a.Xdev.shape[0], a.Xte.shape[0]) == (240, 30, 30)


def test_minibatch_draws_from_the_generator():
    X, Y = torch.arange(20).view(10, 2), torch.arange(10)
    Xb1, Yb1 = data.minibatch(X, Y, 4, torch.Generator().manual_seed(0))
    Xb2, _Yb2 = data.minibatch(X, Y, 4, torch.Generator().manual_seed(0))
    assert torch.equal(Xb1, Xb2)
    assert torch.equal(Xb1[:, 0] // 2, Yb1)


# ----------------------------------------------------------------------- real data
@pytest.fixture(scope="module")
def names():
    return data.read_names()


def test_names_txt_is_the_verified_file(names):
    assert data.sha256_of(data.DEFAULT_NAMES_PATH) == data.NAMES_SHA256
    assert len(names) == 32_033


def test_lecture_split_counts(names):
    splits = split_dataset(names)
    assert len(splits.vocab) == 27
    assert splits.vocab.itos[0] == "."
    assert (splits.Xtr.shape[0], splits.Xdev.shape[0], splits.Xte.shape[0]) == (182_625, 22_655, 22_866)
    assert splits.Xtr.shape[1] == 3


def test_load_splits_caches_the_tensors_and_rebuilds_a_broken_cache(tmp_path):
    names = write(tmp_path / "names.txt", "\n".join(f"{a}{b}x" for a in "abcde" for b in "fghij"))
    first = data.load_splits(names)
    (cache,) = (tmp_path / ".cache").iterdir()
    second = data.load_splits(names)
    assert second.vocab == first.vocab
    assert torch.equal(second.Xdev, first.Xdev)
    cache.write_bytes(b"garbage")
    third = data.load_splits(names)
    assert torch.equal(third.Ytr, first.Ytr)
    assert cache.read_bytes() != b"garbage"
