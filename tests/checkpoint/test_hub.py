"""Models by name: "minilm", and hub names through a Hugging Face cache laid out in a temp dir."""

import os
import shutil

import pytest

from bertkit.checkpoint import hub
from bertkit.checkpoint.load import resolve_checkpoint
from bertkit.cli.main import main
from bertkit.cli.serve import parse_models
from bertkit.errors import CheckpointError
from bertkit.heads import BertModel
from bertkit.inference.pipeline import pipeline

NAME = "sentence-transformers/all-MiniLM-L6-v2"
COMMIT = "c9745ed1d9f207416be6d2e6f8de32d1f16199bf"


@pytest.fixture
def hf_cache(tmp_path, monkeypatch, minilm_path):
    """The cache as huggingface_hub writes it: blobs, a snapshot of links to them, refs/main."""
    repo = tmp_path / "hub" / f"models--{NAME.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    for file in minilm_path.rglob("*"):
        if file.is_file():
            blob = repo / "blobs" / f"{abs(hash(str(file.relative_to(minilm_path)))):x}"
            blob.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(file, blob)
            link = snapshot / file.relative_to(minilm_path)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(blob, link.parent))  # relative, as huggingface_hub links
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)  # no local folder of that name
    return snapshot


@pytest.fixture(params=["huggingface_hub", "cache layout"])
def lookup(request, monkeypatch):
    """Both ways: through huggingface_hub when installed, and reading the layout without it."""
    if request.param == "huggingface_hub":
        pytest.importorskip("huggingface_hub")
    else:
        import builtins

        real_import = builtins.__import__

        def no_hub(name, *args, **kwargs):
            if name == "huggingface_hub" or name.startswith("huggingface_hub."):
                raise ImportError(name)
            return real_import(name, *args, **kwargs)

        monkeypatch.setattr(builtins, "__import__", no_hub)
    return request.param


def test_hub_name_resolves_to_the_cached_snapshot(hf_cache, lookup):
    files = resolve_checkpoint(NAME)
    assert files.directory == hf_cache and files.vocab_file == hf_cache / "vocab.txt"
    model = BertModel.from_pretrained(NAME)
    assert not model.load_report.missing
    vector = pipeline(NAME)("A sentence to embed.")
    assert len(vector) == 384
    assert parse_models([NAME, f"st={NAME}"]) == {"all-MiniLM-L6-v2": hf_cache, "st": hf_cache}  # bertkit serve


def test_missing_name_is_one_line_with_the_download_command(hf_cache, lookup):
    with pytest.raises(CheckpointError) as info:
        resolve_checkpoint("bert-base-uncased")
    message = str(info.value)
    assert "not in the local Hugging Face cache" in message and "huggingface-cli download bert-base-uncased" in message
    assert str(hf_cache.parents[2]) in message and "\n" not in message


def test_a_failed_download_is_one_line(hf_cache, monkeypatch):
    huggingface_hub = pytest.importorskip("huggingface_hub")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    real = huggingface_hub.snapshot_download
    calls = []

    def no_network(repo_id, **kwargs):
        calls.append(kwargs.get("local_files_only", False))
        if kwargs.get("local_files_only"):
            return real(repo_id, **kwargs)
        raise ConnectionError("Failed to resolve 'huggingface.co'\n(more detail)")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_network)
    with pytest.raises(CheckpointError) as info:
        resolve_checkpoint("outputs/mrpc")  # a mistyped local folder looks like a hub name too
    assert calls == [True, False]  # the cache first, then the download
    message = str(info.value)
    assert message.startswith("checkpoint not found: outputs/mrpc is no directory or file here")
    assert "the download failed (ConnectionError: Failed to resolve 'huggingface.co')" in message
    assert "\n" not in message


def test_cache_dir_follows_hf_hub_cache(hf_cache, monkeypatch, tmp_path):
    moved = tmp_path / "elsewhere"
    shutil.move(hf_cache.parents[2], moved)
    monkeypatch.setenv("HF_HUB_CACHE", str(moved))
    assert hub.hub_cache_dir() == moved
    assert resolve_checkpoint(NAME).directory == moved / f"models--{NAME.replace('/', '--')}" / "snapshots" / COMMIT


def test_local_directory_wins_over_a_hub_name(hf_cache, tmp_path, minilm_path):
    local = tmp_path / "sentence-transformers" / "all-MiniLM-L6-v2"
    shutil.copytree(minilm_path, local)
    assert resolve_checkpoint(NAME).directory.resolve() == local  # cwd is tmp_path


def test_packaged_short_name_everywhere(minilm_path, capsys):
    assert resolve_checkpoint("minilm").directory == minilm_path
    assert parse_models(["minilm"]) == {"minilm": minilm_path}
    assert pipeline("minilm").directory == minilm_path
    assert BertModel.from_pretrained("minilm").load_report.source == "minilm"
    assert main(["-q", "similarity", "--model", "minilm", "A man is eating food.", "A man is eating a meal."]) == 0
    assert "0.9" in capsys.readouterr().out  # MiniLM's cosine for this pair
