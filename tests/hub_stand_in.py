"""A local stand-in for the Hugging Face Hub that speaks the Hub's HTTP protocol, for the calls of
`create_repo`, `upload_folder` / `create_commit`, `repo_info`, `list_repo_files` and `hf_hub_download`
made by the real, unchanged `huggingface_hub` client (the `hub` fixture points it here). Model and
dataset repos are folders under a temporary directory, holding the files of their head commit.

  POST /api/repos/create                                  create_repo (409 if the repo exists)
  POST /api/validate-yaml                                 create_commit / upload_folder with a README.md;
                                                          checks a subset of the Hub's metadata rules
  POST /api/{models|datasets}/{repo}/preupload/{rev}      "regular" or "lfs" per file, as the Hub decides
  POST {repo_url}.git/info/lfs/objects/batch              LFS batch API, "basic" transfer
  PUT  /_lfs_upload/{sha256}                              the upload href of the batch answer (S3 on the Hub)
  POST /api/{models|datasets}/{repo}/commit/{rev}         the NDJSON commit: file, lfsFile, deletedFile/Folder
  GET  /api/{models|datasets}/{repo}[/revision/{rev}]     repo_info / model_info / dataset_info
  GET  /api/{models|datasets}/{repo}/tree/{rev}[/{path}]  list_repo_tree / list_repo_files
  HEAD|GET {repo_url}/resolve/{rev}/{path}                hf_hub_download: 200 for a regular file, 302 to
                                                          the "CDN" for an LFS file, with X-Linked-Etag/-Size
  HEAD|GET http://localhost:{port}/_cdn/{sha256}          the CDN (another host name, as on the Hub)

{repo_url} is /{namespace}/{name} for a model and /datasets/{namespace}/{name} for a dataset. Errors
carry the Hub's X-Error-Code / X-Error-Message headers, which `hf_raise_for_status` turns into
`RepositoryNotFoundError`, `RevisionNotFoundError` and `RemoteEntryNotFoundError`.

Not served: Xet storage (the fixture turns the client's Xet path off: `constants.HF_HUB_DISABLE_XET`),
LFS multipart transfer, branches, pull requests and history (only "main" and its head sha resolve).
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import re
import shutil
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import yaml

FAKE_TOKEN = "hf_StandInTokenForTestsOnly"
USER = "user"  # the namespace of repos created without one (the Hub uses the token's user)
REPO = r"(?P<repo>[\w.-]+/[\w.-]+?)"
# The Hub's initial commit is a .gitattributes sending these to LFS (a subset of its list).
LFS_PATTERNS = (
    "*.safetensors *.bin *.pt *.pth *.ckpt *.npy *.npz *.h5 *.onnx *.zip *.gz *.parquet *.arrow".split()
)
GITATTRIBUTES = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in LFS_PATTERNS).encode()
LFS_SIZE_LIMIT = 10 * 1024 * 1024  # the Hub sends files of 10 MB or more to LFS, as it does binary files


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"  # the Hub's "...:38.000Z"


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


# A subset of the Hub's model-card metadata rules (huggingface.co/docs/hub/model-cards#model-card-metadata).
LICENSES = set("apache-2.0 mit bsd-3-clause gpl-3.0 cc-by-4.0 cc-by-sa-4.0 cc-by-nc-4.0 cc-by-nc-sa-4.0 "
               "openrail llama2 llama3 llama3.1 gemma other unknown".split())  # fmt: skip
PIPELINE_TAGS = set("text-generation text2text-generation feature-extraction fill-mask text-to-3d "
                    "text-to-video summarization translation other".split())  # fmt: skip
REPO_ID = re.compile(r"(?:[\w.-]+/)?[\w.-]+")


def metadata_errors(meta: dict) -> list[str]:
    """Why the Hub would refuse this README.md metadata (empty: it passes)."""
    errors = []
    for key in ("tags", "datasets", "language", "metrics", "base_model"):
        value = meta.get(key)
        if value is not None and not (
            isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))
        ):
            errors.append(f'"{key}" must be a string or an array of strings')
    for key in ("library_name", "pipeline_tag", "license", "model_name"):
        if meta.get(key) is not None and not isinstance(meta[key], str):
            errors.append(f'"{key}" must be a string')
    if isinstance(meta.get("license"), str) and meta["license"] not in LICENSES:
        errors.append(f'"license" must be one of the Hub\'s license identifiers, got "{meta["license"]}"')
    if isinstance(meta.get("pipeline_tag"), str) and meta["pipeline_tag"] not in PIPELINE_TAGS:
        errors.append(f'"pipeline_tag" must be a known task, got "{meta["pipeline_tag"]}"')
    base = meta.get("base_model")
    for name in [base] if isinstance(base, str) else base if isinstance(base, list) else []:
        if isinstance(name, str) and not REPO_ID.fullmatch(name):
            errors.append(f'"base_model" must be model ids, got "{name}"')
    return errors


class HubError(Exception):
    """An error answer: status, the Hub's X-Error-Code (or None), message, extra headers."""

    def __init__(self, status: int, code: str | None, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


class Repo:
    def __init__(self, folder: Path, private: bool):
        self.folder, self.private, self.sha = folder, private, "0" * 40
        self.files: dict[str, dict] = {}  # path -> {"size", "oid" (git blob), "lfs" (sha256 or None)}
        self.created = self.modified = now()


class HubStandIn:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.lfs_store = self.root / "_lfs"  # uploaded LFS objects, by sha256
        self.lfs_store.mkdir(parents=True, exist_ok=True)
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[str] = []  # "METHOD /path -> status", for tests that check which calls were made
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = False  # server_close() joins the request threads (block_on_close)
        self.server.hub = self
        self.port = self.server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.cdn = f"http://localhost:{self.port}/_cdn"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, name="hub-stand-in", daemon=True
        )

    def start(self) -> HubStandIn:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def repo_path(self, repo_id: str, repo_type: str = "model") -> Path:
        """The folder holding the files of the repo's head commit."""
        return self.root / f"{repo_type}s" / repo_id

    def repo_url(self, repo_type: str, repo_id: str) -> str:
        return f"{self.endpoint}/{'datasets/' if repo_type == 'dataset' else ''}{repo_id}"

    def get(self, repo_type: str, repo_id: str, revision: str | None = None) -> Repo:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None:
            raise HubError(404, "RepoNotFound", "Repository not found")
        if revision is not None and unquote(revision) not in ("main", repo.sha):
            raise HubError(404, "RevisionNotFound", f"Invalid rev id: {unquote(revision)}")
        return repo

    # ------------------------------------------------------------------ writes
    def create(self, body: dict) -> tuple[int, dict]:
        repo_type = body.get("type") or "model"
        repo_id = f"{body.get('organization') or USER}/{body['name']}"
        with self.lock:
            if (repo_type, repo_id) in self.repos:
                error = f"You already created this {repo_type} repo"
                return 409, {"error": error, "url": self.repo_url(repo_type, repo_id)}
            private = body.get("visibility") == "private"
            self.repos[(repo_type, repo_id)] = Repo(self.repo_path(repo_id, repo_type), private)
            content = base64.b64encode(GITATTRIBUTES).decode()  # the Hub's initial commit
            file = {"path": ".gitattributes", "encoding": "base64", "content": content}
            lines = [
                {"key": "header", "value": {"summary": "initial commit"}},
                {"key": "file", "value": file},
            ]
            self.commit(repo_type, repo_id, lines)
        return 200, {"url": self.repo_url(repo_type, repo_id), "name": repo_id, "id": repo_id}

    def upload_mode(self, repo: Repo, path: str, size: int, sample: bytes) -> dict:
        name = path.rsplit("/", 1)[-1]
        lfs = any(fnmatch.fnmatch(name, p) for p in LFS_PATTERNS) or size >= LFS_SIZE_LIMIT or b"\0" in sample
        f = repo.files.get(path)  # its oid lets the client skip a file that has not changed
        oid = None if f is None else (f["lfs"] if lfs else f["oid"])
        return {"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid}

    def commit(self, repo_type: str, repo_id: str, lines: list[dict]) -> str:
        """Apply NDJSON commit lines to the repo folder, with the lock held; returns the new commit sha."""
        repo = self.get(repo_type, repo_id)
        header = lines[0]["value"] if lines and lines[0]["key"] == "header" else {}
        if header.get("parentCommit") not in (None, repo.sha):
            raise HubError(412, None, "A commit has happened since. Please refresh and try again.")
        for line in lines:
            key, value = line["key"], line["value"]
            target = repo.folder / value.get("path", "")
            if key == "file":
                data = base64.b64decode(value["content"])
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
                repo.files[value["path"]] = {"size": len(data), "oid": git_blob_oid(data), "lfs": None}
            elif key == "lfsFile":
                blob = self.lfs_store / value["oid"]
                if not blob.is_file():
                    error = f"LFS pointer pointed to a file that does not exist: {value['path']}"
                    raise HubError(400, None, f"Your push was rejected because an {error}")
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(blob, target)
                size, pointer = blob.stat().st_size, lfs_pointer(value["oid"], blob.stat().st_size)
                repo.files[value["path"]] = {"size": size, "oid": git_blob_oid(pointer), "lfs": value["oid"]}
            elif key in ("deletedFile", "deletedFolder"):
                folder = value["path"].rstrip("/") + "/" if key == "deletedFolder" else None
                gone = [p for p in repo.files if p == value["path"] or (folder and p.startswith(folder))]
                if not gone:
                    error = f"A file with this name doesn't exist: {value['path']}"
                    raise HubError(404, "EntryNotFound", error)
                for p in gone:
                    del repo.files[p]
                    (repo.folder / p).unlink()
        tree = "".join(f"{p} {f['oid']}\n" for p, f in sorted(repo.files.items()))
        commit = f"{repo.sha}\n{header.get('summary')}\n{time.time_ns()}\n{tree}"
        repo.sha = hashlib.sha1(commit.encode()).hexdigest()
        repo.modified = now()
        return repo.sha

    # ------------------------------------------------------------------ reads
    def info(self, repo_type: str, repo_id: str, repo: Repo) -> dict:
        siblings = [
            {"rfilename": p, "size": f["size"], "blobId": f["oid"]} for p, f in sorted(repo.files.items())
        ]
        info = {"id": repo_id, "author": repo_id.split("/")[0], "sha": repo.sha, "private": repo.private}
        return {**info, "createdAt": repo.created, "lastModified": repo.modified, "siblings": siblings}

    def tree_entry(self, path: str, f: dict) -> dict:
        entry = {"type": "file", "oid": f["oid"], "size": f["size"], "path": path}
        if f["lfs"]:
            pointer_size = len(lfs_pointer(f["lfs"], f["size"]))
            entry["lfs"] = {"oid": f["lfs"], "size": f["size"], "pointerSize": pointer_size}
        return entry

    def tree(self, repo: Repo, folder: str, recursive: bool) -> list[dict]:
        prefix = folder.strip("/") + "/" if folder.strip("/") else ""
        entries, folders = [], set()
        for path, f in sorted(repo.files.items()):
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix) :]
            if recursive or "/" not in rest:
                entries.append(self.tree_entry(path, f))
            parts = rest.split("/")
            for i in range(1, len(parts) if recursive else min(2, len(parts))):
                folders.add(prefix + "/".join(parts[:i]))
        if prefix and not entries and not folders:
            raise HubError(404, "EntryNotFound", f'{folder} does not exist on "main"')
        dirs = [{"type": "directory", "oid": "0" * 40, "size": 0, "path": d} for d in sorted(folders)]
        return dirs + entries


class _Handler(BaseHTTPRequestHandler):
    """Routes each request to the HubStandIn; HTTP/1.0, so no connection (or thread) outlives its request."""

    def log_message(self, *args) -> None:  # keep pytest output quiet
        pass

    def body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":  # httpx streams file uploads
            data = b""
            while size := int(self.rfile.readline().split(b";")[0], 16):
                data += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
            return data
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def send(self, status: int, payload=None, headers: dict | None = None, data: bytes = b"") -> None:
        if payload is not None:
            data = json.dumps(payload).encode()
            headers = {"Content-Type": "application/json", **(headers or {})}
        self.send_response(status)
        self.server.hub.requests.append(f"{self.command} {urlsplit(self.path).path} -> {status}")
        for key, value in {**(headers or {}), "Content-Length": str(len(data))}.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def route(self) -> None:
        hub: HubStandIn = self.server.hub
        method = self.command
        url = urlsplit(self.path)
        path, query = unquote(url.path), parse_qs(url.query)
        try:
            for pattern, handler in ROUTES:
                m = re.fullmatch(pattern, f"{method} {path}")
                if m:
                    kwargs = m.groupdict()
                    if "kind" in kwargs:  # "models"/"datasets"/"datasets/"/None -> "model"/"dataset"
                        kwargs["kind"] = "dataset" if (kwargs["kind"] or "").startswith("data") else "model"
                    return handler(self, hub, query=query, **kwargs)
            raise HubError(404, None, f"Cannot {method} {path}")
        except HubError as err:
            headers = {"X-Error-Message": err.message, **err.headers}
            if err.code:
                headers["X-Error-Code"] = err.code
            self.send(err.status, {"error": err.message}, headers)

    do_HEAD = do_GET = do_POST = do_PUT = route

    def authorized(self) -> None:
        if self.headers.get("Authorization") != f"Bearer {FAKE_TOKEN}":
            raise HubError(401, None, "Invalid credentials in Authorization header")

    # ------------------------------------------------------------------ route handlers
    def create_repo(self, hub, query):
        self.authorized()
        self.send(*hub.create(json.loads(self.body())))

    def validate_yaml(self, hub, query):
        content = json.loads(self.body())["content"]
        m = re.match(r"^---\n(.*?)\n---", content, re.S)
        try:
            meta = yaml.safe_load(m.group(1)) if m else {}
            if meta is not None and not isinstance(meta, dict):
                raise yaml.YAMLError("metadata must be a YAML mapping")
        except yaml.YAMLError as err:
            return self.send(400, {"errors": [{"message": str(err)}], "warnings": []})
        errors = [{"message": message} for message in metadata_errors(meta or {})]
        self.send(400 if errors else 200, {"errors": errors, "warnings": []})

    def preupload(self, hub, query, kind, repo, rev):
        self.authorized()
        files = json.loads(self.body())["files"]
        with hub.lock:
            r = hub.get(kind, repo, rev)
            modes = [hub.upload_mode(r, f["path"], f["size"], base64.b64decode(f["sample"])) for f in files]
            self.send(200, {"files": modes, "commitOid": r.sha})

    def lfs_batch(self, hub, query, kind, repo):
        self.authorized()
        hub.get(kind, repo)
        objects = []
        for obj in json.loads(self.body())["objects"]:
            entry = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if not (hub.lfs_store / obj["oid"]).is_file():  # no "actions": already stored, nothing to upload
                upload = {"href": f"{hub.endpoint}/_lfs_upload/{obj['oid']}"}  # a presigned S3 URL on the Hub
                entry["actions"] = {"upload": upload}  # the Hub adds a "verify" action, which is optional
            objects.append(entry)
        answer = {"transfer": "basic", "objects": objects, "hash_algo": "sha256"}
        self.send(200, answer, {"Content-Type": "application/vnd.git-lfs+json"})

    def lfs_upload(self, hub, query, oid):
        data = self.body()
        if hashlib.sha256(data).hexdigest() != oid:
            raise HubError(400, None, "uploaded content does not match its sha256")
        (hub.lfs_store / oid).write_bytes(data)
        self.send(200, headers={"ETag": f'"{hashlib.md5(data).hexdigest()}"'})

    def commit(self, hub, query, kind, repo, rev):
        self.authorized()
        if self.headers.get("Content-Type") != "application/x-ndjson":
            raise HubError(400, None, "expected an application/x-ndjson body")
        lines = [json.loads(line) for line in self.body().splitlines() if line.strip()]
        with hub.lock:
            hub.get(kind, repo, rev)
            sha = hub.commit(kind, repo, lines)
        url = f"{hub.repo_url(kind, repo)}/commit/{sha}"
        self.send(
            200,
            {"success": True, "commitOid": sha, "commitUrl": url, "hookOutput": "", "pullRequestUrl": None},
        )

    def repo_info(self, hub, query, kind, repo, rev):
        with hub.lock:
            self.send(200, hub.info(kind, repo, hub.get(kind, repo, rev)))

    def tree(self, hub, query, kind, repo, rev, folder):
        with hub.lock:
            entries = hub.tree(hub.get(kind, repo, rev), folder or "", query.get("recursive") == ["true"])
        self.send(200, entries)

    def resolve(self, hub, query, kind, repo, rev, file):
        with hub.lock:
            r = hub.get(kind, repo, rev)
            f = r.files.get(file)
            headers = {"X-Repo-Commit": r.sha}
            if f is None:
                raise HubError(404, "EntryNotFound", "Entry not found", headers)
            headers["ETag"] = f'"{f["oid"]}"'
            if f["lfs"]:  # the Hub redirects LFS files to its CDN, describing the file in X-Linked-* headers
                headers.update({"X-Linked-Etag": f'"{f["lfs"]}"', "X-Linked-Size": str(f["size"])})
                headers["Location"] = f"{hub.cdn}/{f['lfs']}"
                return self.send(302, headers=headers)
            data = (r.folder / file).read_bytes()
        self.send(200, headers={**headers, "Content-Type": "application/octet-stream"}, data=data)

    def cdn(self, hub, query, oid):
        blob = hub.lfs_store / oid
        if not blob.is_file():
            raise HubError(404, None, "NoSuchKey")
        headers = {"ETag": f'"{oid}"', "Content-Type": "application/octet-stream"}
        self.send(200, headers=headers, data=blob.read_bytes())


KIND = r"(?P<kind>models|datasets)"
URL_KIND = r"(?P<kind>datasets/)?"
ROUTES = [
    (r"POST /api/repos/create", _Handler.create_repo),
    (r"POST /api/validate-yaml", _Handler.validate_yaml),
    (rf"POST /api/{KIND}/{REPO}/preupload/(?P<rev>[^/]+)", _Handler.preupload),
    (rf"POST /api/{KIND}/{REPO}/commit/(?P<rev>[^/]+)", _Handler.commit),
    (rf"GET /api/{KIND}/{REPO}/tree/(?P<rev>[^/]+)(?:/(?P<folder>.+))?", _Handler.tree),
    (rf"GET /api/{KIND}/{REPO}(?:/revision/(?P<rev>[^/]+))?", _Handler.repo_info),
    (rf"POST /{URL_KIND}{REPO}\.git/info/lfs/objects/batch", _Handler.lfs_batch),
    (r"PUT /_lfs_upload/(?P<oid>[0-9a-f]{64})", _Handler.lfs_upload),
    (rf"(?:HEAD|GET) /{URL_KIND}{REPO}/resolve/(?P<rev>[^/]+)/(?P<file>.+)", _Handler.resolve),
    (r"(?:HEAD|GET) /_cdn/(?P<oid>[0-9a-f]{64})", _Handler.cdn),
]


@pytest.fixture(name="hub")
def hub_fixture(tmp_path, monkeypatch):
    """A running HubStandIn that huggingface_hub (already imported or not) talks to, with a fake token."""
    from huggingface_hub import constants, hf_api

    server = HubStandIn(tmp_path / "hub").start()
    try:
        # constants.ENDPOINT is read when an HfApi is built (push_to_hub builds one per call) and by
        # the LFS/commit helpers; hf_hub_download builds its URL from HUGGINGFACE_CO_URL_TEMPLATE; the
        # module-level functions (huggingface_hub.upload_folder, ...) are methods of hf_api.api, whose
        # endpoint was fixed at import.
        monkeypatch.setattr(constants, "ENDPOINT", server.endpoint)
        template = server.endpoint + "/{repo_id}/resolve/{revision}/{filename}"
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
        monkeypatch.setattr(hf_api.api, "endpoint", server.endpoint)
        # transformers keeps one HfApi whose endpoint is fixed when it is first made: make it anew
        import transformers.utils.hub

        monkeypatch.setattr(transformers.utils.hub, "_hf_api", None, raising=False)
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)  # the stand-in has no Xet storage: use LFS
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_IMPLICIT_TOKEN", False)  # send HF_TOKEN
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
        monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
        yield server
    finally:
        server.stop()
