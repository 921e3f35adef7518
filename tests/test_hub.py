"""Hub round trips through the real huggingface_hub client, against tests/hub_stand_in.py."""

import hashlib
import threading

import huggingface_hub
import pytest
import torch
from hub_stand_in import hub_fixture  # noqa: F401  (the `hub` fixture)
from huggingface_hub.errors import RemoteEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

from motion_tokenizer import MotionVQVAE, VQVAEConfig


@pytest.fixture(autouse=True)
def no_threads_left_behind():
    before = set(threading.enumerate())
    yield
    # tqdm's monitor is a process-wide daemon that the client's first progress bar starts
    left = [t for t in threading.enumerate() if t not in before and t.is_alive() and t.name != "tqdm_monitor"]
    assert not left, f"threads left behind: {left}"


def test_upload_folder_and_download_round_trip(hub, tmp_path):
    folder = tmp_path / "upload"
    (folder / "sub").mkdir(parents=True)
    files = {
        "notes.txt": b"plain text, sent in the commit itself\n",
        "sub/blob.bin": bytes(range(256)) * 64,  # binary and *.bin: goes through the LFS batch API
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)

    repo_id = huggingface_hub.create_repo("user/round-trip").repo_id
    with pytest.raises(huggingface_hub.errors.HfHubHTTPError) as err:
        huggingface_hub.create_repo(repo_id)  # the Hub answers 409 when the repo exists
    assert err.value.response.status_code == 409
    info = huggingface_hub.upload_folder(repo_id=repo_id, folder_path=folder, commit_message="add files")

    for name, data in files.items():
        assert (hub.repo_path(repo_id) / name).read_bytes() == data  # what the stand-in stored
        downloaded = huggingface_hub.hf_hub_download(repo_id, name, cache_dir=tmp_path / "cache")
        assert open(downloaded, "rb").read() == data
    assert sorted(huggingface_hub.list_repo_files(repo_id)) == [".gitattributes", "notes.txt", "sub/blob.bin"]
    model = huggingface_hub.model_info(repo_id, files_metadata=True)
    assert model.sha == info.oid
    assert {s.rfilename for s in model.siblings} == {".gitattributes", "notes.txt", "sub/blob.bin"}
    with pytest.raises(RemoteEntryNotFoundError):
        huggingface_hub.hf_hub_download(repo_id, "missing.txt", cache_dir=tmp_path / "cache")
    with pytest.raises(RevisionNotFoundError):
        huggingface_hub.hf_hub_download(
            repo_id, "notes.txt", revision="no-such-branch", cache_dir=tmp_path / "c2"
        )

    # the text file went in the commit itself; the binary one took the LFS path: batch API, upload,
    # then a download redirected to the "CDN"
    for call in (
        "POST /user/round-trip.git/info/lfs/objects/batch -> 200",
        f"PUT /_lfs_upload/{hashlib.sha256(files['sub/blob.bin']).hexdigest()} -> 200",
        "POST /api/models/user/round-trip/commit/main -> 200",
        "HEAD /user/round-trip/resolve/main/notes.txt -> 200",
        "HEAD /user/round-trip/resolve/main/sub/blob.bin -> 302",
    ):
        assert call in hub.requests, call
    assert any(r.startswith("GET /_cdn/") for r in hub.requests)


def test_writes_need_a_valid_token(hub):
    with pytest.raises(huggingface_hub.errors.HfHubHTTPError) as err:
        huggingface_hub.HfApi(token="hf_wrong").create_repo("user/nope")
    assert err.value.response.status_code == 401


def test_dataset_repo_round_trip(hub, tmp_path):
    api = huggingface_hub.HfApi()
    repo_id = api.create_repo("user/motions", repo_type="dataset").repo_id
    api.upload_file(
        path_or_fileobj=b"a,b\n1,2\n", path_in_repo="data/train.csv", repo_id=repo_id, repo_type="dataset"
    )
    assert (hub.repo_path(repo_id, "dataset") / "data/train.csv").read_bytes() == b"a,b\n1,2\n"
    assert api.repo_info(repo_id, repo_type="dataset").sha is not None
    path = huggingface_hub.hf_hub_download(
        repo_id, "data/train.csv", repo_type="dataset", cache_dir=tmp_path / "c"
    )
    assert open(path, "rb").read() == b"a,b\n1,2\n"
    with pytest.raises(RepositoryNotFoundError):
        api.repo_info(repo_id)  # a model of that name does not exist


def test_vqvae_push_to_hub_and_from_pretrained(hub):
    torch.manual_seed(0)
    model = MotionVQVAE(VQVAEConfig.preset("tiny"))
    mean, std = torch.randn(263), torch.rand(263) + 0.5
    model.set_normalization_(mean, std)
    features = torch.randn(2, 32, 263) * std + mean
    model.train()
    model(features)  # initialises the EMA codebook from this batch
    model.eval()

    model.push_to_hub("user/motion-vqvae")
    # .gitattributes is the Hub's initial commit; README.md the model card the mixin writes
    stored = sorted(p.name for p in hub.repo_path("user/motion-vqvae").iterdir())
    assert stored == [".gitattributes", "README.md", "config.json", "model.safetensors"]
    assert sorted(huggingface_hub.list_repo_files("user/motion-vqvae")) == stored
    assert "POST /api/validate-yaml -> 200" in hub.requests  # the model card's metadata
    assert "HEAD /user/motion-vqvae/resolve/main/model.safetensors -> 302" not in hub.requests

    loaded = MotionVQVAE.from_pretrained("user/motion-vqvae")
    expected, got = model.state_dict(), loaded.state_dict()
    assert expected.keys() == got.keys()
    for key in expected:
        assert expected[key].dtype == got[key].dtype and torch.equal(expected[key], got[key]), key
    assert torch.equal(model.encode(features), loaded.encode(features))
    assert "HEAD /user/motion-vqvae/resolve/main/model.safetensors -> 302" in hub.requests  # an LFS file


def test_missing_repo_raises_repository_not_found(hub):
    with pytest.raises(RepositoryNotFoundError) as err:
        MotionVQVAE.from_pretrained("user/no-such-tokenizer")
    assert "user/no-such-tokenizer" in str(err.value)
