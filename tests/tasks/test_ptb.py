"""PTB task and data download: token counts, vocabulary, truncated-BPTT stream, evaluation,
checksums, and the downloader against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import functools
import hashlib
import http.server
import math
import shutil
import socket
import threading
from pathlib import Path

import pytest
import torch

from cellsearch.errors import ConfigError, DataError
from cellsearch.tasks import data
from cellsearch.tasks.data import DATASETS, data_dir, dataset_dir, download, verify
from tests.support.paths import SHARED

SHARED_PTB = SHARED / "data/ptb"
PTB_FILES = list(DATASETS["ptb"].files)
needs_ptb = pytest.mark.skipif(not all((SHARED_PTB / f).is_file() for f in PTB_FILES),
                               reason=f"the shared PTB copy is not at {SHARED_PTB}")

# Mikolov's files: words (whitespace-separated) and lines (one <eos> each) per split.
COUNTS = {"train": (887_521, 42_068), "valid": (70_390, 3_370), "test": (78_669, 3_761)}


@pytest.fixture(scope="module")
def task():
    if not SHARED_PTB.is_dir():
        pytest.skip(f"the shared PTB copy is not at {SHARED_PTB}")
    from cellsearch.tasks.ptb import PTBTask

    return PTBTask(SHARED_PTB)


def tiny_model(vocab_size: int):
    from cellsearch.nn.model import ModelConfig, SeqModel

    model = SeqModel("lstm", ModelConfig(vocab_size=vocab_size, hidden_size=16))
    model.reset_parameters(generator=torch.Generator().manual_seed(0))
    return model


# --- data directory resolution -----------------------------------------------------------------

def test_data_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("CELLSEARCH_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data_dir(tmp_path / "explicit") == tmp_path / "explicit"
    assert data_dir(str(tmp_path / "explicit")) == tmp_path / "explicit"
    assert data_dir(None) == tmp_path / "env"
    monkeypatch.delenv("CELLSEARCH_DATA")
    assert data_dir(None) == tmp_path / "xdg" / "cellsearch" / "data"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data_dir(None) == tmp_path / "home" / ".cache" / "cellsearch" / "data"


def test_dataset_dir_accepts_root_or_dataset_folder(tmp_path):
    assert dataset_dir("ptb", tmp_path) == tmp_path / "ptb"
    assert dataset_dir("ptb", tmp_path / "ptb") == tmp_path / "ptb"
    (tmp_path / "ptb.train.txt").write_text("x\n")  # a root that already holds the files
    assert dataset_dir("ptb", tmp_path) == tmp_path
    with pytest.raises(DataError, match="unknown data set 'nope'.*ptb"):
        dataset_dir("nope", tmp_path)


def test_registry_sums_match_the_shared_copy():
    if not SHARED_PTB.is_dir():
        pytest.skip(f"the shared PTB copy is not at {SHARED_PTB}")
    listed = dict(reversed(line.split()) for line in (SHARED_PTB / "SHA256SUMS").read_text().splitlines() if line)
    assert dict(DATASETS["ptb"].files) == listed


# --- the corpus ---------------------------------------------------------------------------------

@needs_ptb
@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_token_counts(task, split):
    words, lines = COUNTS[split]
    ids = task.tokens(split)
    assert ids.dtype == torch.long and ids.dim() == 1
    assert ids.numel() == words + lines
    assert int((ids == task.vocab.eos).sum()) == lines
    assert int(ids[-1]) == task.vocab.eos


@needs_ptb
def test_vocabulary(task):
    assert len(task.vocab) == 10_000
    assert task.vocab.id("<eos>") == 0 and task.vocab.eos == 0
    assert "<unk>" in task.vocab.stoi
    assert task.vocab.itos[1] == "the"  # then by decreasing training frequency
    # The Mikolov files are closed-vocabulary: every valid/test word is a training word.
    from cellsearch.tasks.ptb import read_words

    for split in ("valid", "test"):
        assert set(read_words(SHARED_PTB / f"ptb.{split}.txt")) <= set(task.vocab.stoi)
    first = read_words(SHARED_PTB / "ptb.train.txt")[:50]
    assert task.vocab.decode(task.tokens("train")[:50].tolist()) == first
    assert task.config() == {"name": "ptb", "bptt": 35, "eval_tokens": None}
    assert task.primary_metric == "word_prob" and task.name == "ptb"


@needs_ptb
def test_accepts_the_data_root_too():
    assert verify("ptb", SHARED_PTB.parent) == SHARED_PTB
    assert verify("ptb", SHARED_PTB) == SHARED_PTB


# --- training stream ----------------------------------------------------------------------------

def same(a, b) -> bool:
    return (torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
            and torch.equal(a.mask, b.mask) and a.carry_state == b.carry_state)


@needs_ptb
def test_stream_layout_and_determinism(task):
    s1, s2 = task.train_stream(20, seed=0), task.train_stream(20, seed=1)
    ids = task.tokens("train")
    rows = ids.numel() // 20
    b = next(s1)
    assert b.inputs.shape == b.targets.shape == b.mask.shape == (35, 20)
    assert b.mask.dtype == torch.bool and bool(b.mask.all())
    assert b.carry_state is False
    assert torch.equal(b.inputs[:, 0], ids[:35]) and torch.equal(b.targets[:, 0], ids[1:36])
    assert torch.equal(b.inputs[:, 3], ids[3 * rows:3 * rows + 35])  # column j = j-th slice of the stream
    assert same(b, next(s2))
    for _ in range(5):
        b1, b2 = next(s1), next(s2)
        assert same(b1, b2) and b1.carry_state is True
        assert torch.equal(b1.inputs[1:], b1.targets[:-1])


@needs_ptb
def test_stream_resume_gives_the_same_batches(task):
    s = task.train_stream(16, seed=0)
    for _ in range(7):
        next(s)
    saved = s.state_dict()
    expected = [next(s) for _ in range(4)]
    r = task.train_stream(16, seed=0)
    r.load_state_dict(saved)
    for e in expected:
        assert same(next(r), e)
    assert r.state_dict() == s.state_dict()
    with pytest.raises(ConfigError, match="batch_size=16"):
        task.train_stream(8, seed=0).load_state_dict(saved)


@needs_ptb
def test_epoch_wrap_resets_state(task):
    # 10,000 columns: 92 rows → chunks of 35, 35, 21 steps per epoch.
    s = task.train_stream(10_000, seed=0)
    assert s.batches_per_epoch == 3
    epoch0 = [next(s) for _ in range(3)]
    assert [b.inputs.shape[0] for b in epoch0] == [35, 35, 21]
    assert [b.carry_state for b in epoch0] == [False, True, True]
    rows = task.tokens("train").numel() // 10_000
    assert sum(b.inputs.shape[0] for b in epoch0) == rows - 1
    assert s.state_dict()["epoch"] == 0
    saved = s.state_dict()  # at the very end of epoch 0
    first = next(s)
    assert first.carry_state is False and same(first, epoch0[0])
    assert s.state_dict()["epoch"] == 1 and s.state_dict()["position"] == 35
    assert [next(s).carry_state for _ in range(3)] == [True, True, False]
    r = task.train_stream(10_000, seed=0)
    r.load_state_dict(saved)
    assert same(next(r), epoch0[0]) and r.epoch == 1


# --- evaluation ---------------------------------------------------------------------------------

@needs_ptb
def test_evaluate_untrained_model(task):
    model = tiny_model(len(task.vocab))
    model.train()
    m = task.evaluate(model, "valid", batch_size=10, max_tokens=2_000)
    assert model.training  # train mode restored
    assert set(m) >= {"perplexity", "word_prob", "loss"}
    assert 3_000 < m["perplexity"] < 30_000  # about uniform over 10,000 words
    assert m["word_prob"] == pytest.approx(1 / m["perplexity"], rel=1e-12)
    assert m["loss"] == pytest.approx(math.log(m["perplexity"]), rel=1e-12)
    model.eval()
    again = task.evaluate(model, "valid", batch_size=10, max_tokens=2_000)
    assert not model.training and again == m
    assert task.evaluate(model, "test", batch_size=4, max_tokens=500)["perplexity"] > 1_000


@needs_ptb
def test_evaluate_carries_state_across_chunks(task):
    """Chunked evaluation with the state carried equals one pass over the whole (short) split."""
    from cellsearch.tasks.ptb import PTBTask

    model = tiny_model(len(task.vocab))
    short = PTBTask(SHARED_PTB, bptt=7, eval_tokens=600)
    assert short.config() == {"name": "ptb", "bptt": 7, "eval_tokens": 600}
    chunked = short.evaluate(model, "valid", batch_size=3)
    other = task.evaluate(model, "valid", batch_size=3, max_tokens=600)  # bptt 35: 6 chunks
    ids = task.tokens("valid")[:600].view(3, 200).t()
    with torch.no_grad():
        logits, _ = model(ids[:-1])
        nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[1:].reshape(-1))
    assert chunked["loss"] == pytest.approx(float(nll), rel=1e-5)
    assert other["loss"] == pytest.approx(float(nll), rel=1e-5)
    with pytest.raises(ConfigError, match="too few"):
        task.evaluate(model, "valid", batch_size=10, max_tokens=15)
    with pytest.raises(ConfigError, match="unknown PTB split"):
        task.evaluate(model, "dev")


# --- missing and corrupted data -----------------------------------------------------------------

def test_missing_data_says_how_to_get_it(tmp_path, monkeypatch):
    from cellsearch.tasks.ptb import PTBTask

    with pytest.raises(DataError, match="cellsearch data download ptb") as exc:
        PTBTask(data_dir=tmp_path / "nowhere")
    assert "--data-dir" in str(exc.value) and "ptb.train.txt" in str(exc.value)
    monkeypatch.setenv("CELLSEARCH_DATA", str(tmp_path / "env-data"))
    with pytest.raises(DataError, match="cellsearch data download ptb") as exc:
        PTBTask()
    assert str(tmp_path / "env-data") in str(exc.value)


@needs_ptb
def test_corrupted_file_is_named(tmp_path):
    from cellsearch.tasks.ptb import PTBTask

    folder = tmp_path / "ptb"
    folder.mkdir()
    for f in PTB_FILES:
        shutil.copyfile(SHARED_PTB / f, folder / f)
    raw = bytearray((folder / "ptb.valid.txt").read_bytes())
    raw[100] ^= 0x01
    (folder / "ptb.valid.txt").write_bytes(bytes(raw))
    with pytest.raises(DataError) as exc:
        PTBTask(data_dir=tmp_path)
    msg = str(exc.value)
    assert "ptb.valid.txt" in msg and DATASETS["ptb"].files["ptb.valid.txt"] in msg
    assert hashlib.sha256(raw).hexdigest() in msg and "cellsearch data download ptb" in msg


# --- downloader against a local HTTP server -----------------------------------------------------

class Server:
    def __init__(self, root: Path):
        self.root = root
        self.requests: list[str] = []
        log = self.requests

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, fmt, *args):  # keep test output quiet, remember the paths
                log.append(self.path)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                     functools.partial(Handler, directory=str(root)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def server(tmp_path):
    if not SHARED_PTB.is_dir():
        pytest.skip(f"the shared PTB copy is not at {SHARED_PTB}")
    root = tmp_path / "served"
    root.mkdir()
    for f in PTB_FILES:
        shutil.copyfile(SHARED_PTB / f, root / f)
    srv = Server(root)
    yield srv
    srv.close()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_good(server, tmp_path):
    dest = tmp_path / "data"
    events = []
    folder = download("ptb", dest, base_url=server.url, progress=events.append)
    assert folder == dest / "ptb"
    assert leftovers(folder) == sorted(PTB_FILES)
    for f, sha in DATASETS["ptb"].files.items():
        assert data.sha256_file(folder / f) == sha
    assert sorted(server.requests) == sorted("/" + f for f in PTB_FILES)
    # progress comes as events (the library draws nothing): each file from 0 to its whole size
    for f in PTB_FILES:
        told = [e for e in events if e.name == f]
        assert told[0].done == 0 and told[-1].done == (folder / f).stat().st_size
    assert verify("ptb", dest) == folder
    server.requests.clear()
    assert download("ptb", dest, base_url=server.url, progress=None) == folder
    assert server.requests == []  # nothing fetched again


def test_download_url_from_env_and_refetch_of_a_bad_local_file(server, tmp_path, monkeypatch):
    monkeypatch.setenv("CELLSEARCH_PTB_URL", server.url.rstrip("/"))  # with or without the slash
    dest = tmp_path / "ptb"  # the data set's own folder works as a root too
    dest.mkdir()
    shutil.copyfile(SHARED_PTB / "ptb.train.txt", dest / "ptb.train.txt")
    (dest / "ptb.test.txt").write_text("stale\n")
    assert download("ptb", dest, progress=None) == dest
    assert sorted(server.requests) == ["/ptb.test.txt", "/ptb.valid.txt"]
    verify("ptb", dest)


def test_download_refuses_a_corrupted_file(server, tmp_path):
    raw = bytearray((server.root / "ptb.train.txt").read_bytes())
    raw[-2] ^= 0x20
    (server.root / "ptb.train.txt").write_bytes(bytes(raw))
    dest = tmp_path / "data"
    with pytest.raises(DataError) as exc:
        download("ptb", dest, base_url=server.url, progress=None)
    msg = str(exc.value)
    assert "ptb.train.txt" in msg and DATASETS["ptb"].files["ptb.train.txt"] in msg
    assert hashlib.sha256(raw).hexdigest() in msg
    assert leftovers(dest / "ptb") == []  # neither the file nor its temp file


def test_download_404(server, tmp_path):
    (server.root / "ptb.valid.txt").unlink()
    dest = tmp_path / "data"
    with pytest.raises(DataError, match="HTTP 404") as exc:
        download("ptb", dest, base_url=server.url, progress=None)
    assert server.url + "ptb.valid.txt" in str(exc.value) and "base_url" in str(exc.value)
    assert leftovers(dest / "ptb") == ["ptb.train.txt"]  # the good file before it stays, no temp files


def test_download_connection_refused(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DataError, match="could not download"):
        download("ptb", tmp_path, base_url=f"http://127.0.0.1:{port}/", progress=None)
    assert leftovers(tmp_path / "ptb") == []
