"""Push motion-align artifacts to the Hugging Face Hub with a model card (the command line is
:mod:`motion_align.cli.push`: ``motion-align push``).

An artifact is a LoRA adapter, an SFT or a fully fine-tuned policy, or a motion tokenizer; its files say which
(:func:`motion_align.policy.artifacts.artifact_kind`). The card (:mod:`motion_align.policy.model_card`) is
read from ``training_info.json`` in the folder when present, a JSON object with any of these keys (flags
override them): ``base_model`` (Hub id or path of the policy it was trained from; an adapter's default:
``base_model_name_or_path`` of ``adapter_config.json``), ``motion_tokenizer`` (path or Hub id of the VQ-VAE;
default: ``motion_tokenizer.json``), ``dataset`` (preference dataset path or Hub id), ``rows``, ``method``
(dpo, ipo, hinge, sopo, ...), ``family`` (t5 or llama), ``license``, ``recipe`` (YAML path),
``hyperparameters`` (name -> value), ``command`` (the exact command line) and ``metrics`` (name -> number,
interval string, or ``{"mean", "ci95"}``; default: an SFT policy's ``sft_run.json`` eval metrics, a motion
tokenizer's ``eval_results.json``). The endpoint is ``HF_ENDPOINT`` (default https://huggingface.co).

Nothing pushed points to a folder of this machine. The files are uploaded from a staged copy (the folder
pushed is never written to), in which an adapter's ``base_model_name_or_path`` and the motion tokenizer that
``motion_tokenizer.json`` and ``training_info.json`` record are Hub ids. A base or motion tokenizer that is a
local folder is pushed first, with its own card (``push_base`` / ``push_tokenizer``), and named by that id;
without it the push is refused, saying which flag to pass. A local preference dataset is pushed as a dataset
repo with ``push_dataset``; otherwise the card's body names its path. A T5 adapter is rewritten so that
stock PEFT loads it as the toolkit does (:func:`motion_align.policy.lora.untie_adapter_folder`).

Secrets never reach the card: hyper-parameters whose name says token/secret/password/API key are
redacted, as are token-like strings in the command; nothing is read from the environment; and a push is
refused if any file to upload contains the token it is made with.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import httpx
from huggingface_hub import HfApi, get_token
from huggingface_hub.errors import HfHubHTTPError, RevisionNotFoundError
from huggingface_hub.utils import filter_repo_objects

from motion_align.policy.artifacts import (
    ADAPTER,
    FULL_POLICY,
    KIND_NAMES,
    MOTION_TOKENIZER,
    MOTION_TOKENIZER_FILE,
    SFT_POLICY,
    SFT_RECORD,
    artifact_kind,
    policy_kind,
)
from motion_align.policy.model_card import (  # noqa: F401  (ModelCardInfo, redact: this module's API too)
    ModelCardInfo,
    build_model_card,
    read_json,
    redact,
)
from motion_tokenizer.atomic_files import write_atomic
from motion_tokenizer.checkpoint import looks_local

logger = logging.getLogger(__name__)

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
TRAINING_INFO = "training_info.json"
# Top-level files only ("*/*" is ignored): adapter, card, tokenizer files, motion_vocab.json,
# motion_tokenizer.json and other JSON metadata; never checkpoints/, optimizer states, pickles, or the records
# that name this machine's folders (trainer_state.json, a VQ-VAE's training_config.json).
ALLOW_PATTERNS = [*ADAPTER_FILES, "README.md", "*.json", "*.model", "merges.txt", "vocab.txt", "*.jinja"]
IGNORE_PATTERNS = ["*/*", "checkpoint*", "optimizer*", "scheduler*", "rng_state*", "training_args*",
                   "trainer_state.json", "training_config.json"]  # fmt: skip
#: What each kind uploads (besides the card), before IGNORE_PATTERNS.
KIND_FILES = {
    ADAPTER: ALLOW_PATTERNS,
    SFT_POLICY: [*ALLOW_PATTERNS, "model.safetensors", "model-*-of-*.safetensors"],
    FULL_POLICY: [*ALLOW_PATTERNS, "model.safetensors", "model-*-of-*.safetensors"],
    MOTION_TOKENIZER: ["config.json", "model.safetensors", "eval_results.json"],
}
DATASET = "preference dataset"
#: The ``--flag`` that pushes a local reference, and the one that names it on the Hub instead.
_FLAGS = {
    "base_model": ("--push-base", "--base-model"),
    "motion_tokenizer": ("--push-tokenizer", "--motion-tokenizer"),
    "dataset": ("--push-dataset", "--dataset"),
}


class HubPushError(RuntimeError):
    """A push that the Hub refused or could not be reached for; the message says what to do."""


class LocalReferenceError(ValueError):
    """An artifact that would point to a folder of this machine from the Hub; the message names the flag."""


@dataclass
class PushedRepo:
    """A repo a push wrote: the kind of what went there (or ``preference dataset``), its id, a commit URL."""

    kind: str
    repo_id: str
    url: str


# ---------------------------------------------------------------------------- what goes up
def check_adapter_folder(folder: str | os.PathLike[str]) -> Path:
    """``folder`` as a Path; FileNotFoundError unless it holds a safetensors LoRA adapter."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such adapter folder")
    missing = [name for name in ADAPTER_FILES if not (folder / name).is_file()]
    if missing:
        hint = "save it with peft_model.save_pretrained(folder)"
        if (folder / "adapter_model.bin").is_file():
            hint = "adapter_model.bin is a pickle: re-save it with peft_model.save_pretrained(folder)"
        raise FileNotFoundError(f"{folder} is not a saved LoRA adapter: no {' or '.join(missing)} ({hint})")
    read_json(folder / "adapter_config.json")
    return folder


def upload_files(folder: Path, kind: str = ADAPTER) -> list[str]:
    """The files of ``folder`` that a push of ``kind`` uploads (:data:`KIND_FILES` minus IGNORE_PATTERNS)."""
    names = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name != "README.md")
    return list(filter_repo_objects(names, allow_patterns=KIND_FILES[kind], ignore_patterns=IGNORE_PATTERNS))


def _run_metrics(folder: Path) -> dict[str, Any]:
    """The default metrics of a card: an SFT run's final eval, a VQ-VAE's test reconstruction."""
    record = read_json(folder / SFT_RECORD).get("eval") or read_json(folder / "eval_results.json").get("test")
    if not isinstance(record, dict):
        return {}
    numbers = {k: v for k, v in record.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return {k: round(v, 4) for k, v in numbers.items()}


def card_info_from_folder(
    folder: str | os.PathLike[str], kind: str | None = None, **overrides: Any
) -> ModelCardInfo:
    """ModelCardInfo from ``training_info.json`` in ``folder`` with ``overrides`` (None: not given), for an
    artifact of ``kind`` (default: an adapter when the folder has ``adapter_config.json``)."""
    folder = Path(folder)
    path, known = folder / TRAINING_INFO, {f.name for f in fields(ModelCardInfo)} - {"repo_id", "kind"}
    info = read_json(path)
    unknown = sorted(set(info) - known)
    if unknown:
        raise ValueError(f"{path}: unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    info.update({k: v for k, v in overrides.items() if v is not None})
    adapter = folder / "adapter_config.json"
    kind = kind or (ADAPTER if adapter.is_file() else None)
    if kind == ADAPTER:
        info.setdefault("base_model", read_json(adapter).get("base_model_name_or_path"))
        if not info["base_model"]:
            raise ValueError(f"{folder}: no base model recorded: pass --base-model or add it to {path}")
    recorded = read_json(folder / MOTION_TOKENIZER_FILE).get("path")
    if (
        kind != MOTION_TOKENIZER
        and not info.get("motion_tokenizer")
        and recorded
        and isinstance(recorded, str)
    ):
        inside = folder / recorded  # recorded relative to the folder, or as written
        inside = inside if not Path(recorded).is_absolute() and inside.exists() else recorded
        info["motion_tokenizer"] = str(inside)
    if not info.get("metrics"):
        info["metrics"] = _run_metrics(folder)
    for key, type_ in (("rows", int), ("hyperparameters", dict), ("metrics", dict)):
        if info.get(key) is not None and not isinstance(info[key], type_):
            raise ValueError(f"{path}: field {key!r} must be of type {type_.__name__}, got {info[key]!r}")
    return ModelCardInfo(**info, kind=kind)


def _local(name: str | None, role: str, key: str) -> Path | None:
    """The folder or file of this machine that ``name`` is; None for a Hub id or nothing. A local-looking
    path that does not exist is a FileNotFoundError (it can be neither pushed nor found on the Hub)."""
    if not name:
        return None
    if Path(name).exists():
        return Path(name)
    if looks_local(name):
        raise FileNotFoundError(
            f"the {role} {name} is a local path that does not exist here: name it on the Hub with "
            f"{_FLAGS[key][1]} HUB_ID"
        )
    return None


@dataclass
class _Step:
    kind: str
    folder: Path
    repo_id: str
    card: ModelCardInfo | None  # None for a dataset
    written: str | None = None  # how the artifact's card names this folder


_ROLES = {"base_model": "base policy", "motion_tokenizer": "motion tokenizer", "dataset": DATASET}


def _plan(
    folder: Path, kind: str, card: ModelCardInfo, repo_id: str, flags: dict[str, str | None]
) -> list[_Step]:
    """The pushes, in order (motion tokenizer, dataset, base, the artifact): every local reference the Hub
    copy needs is pushed, or LocalReferenceError names the flag that pushes it; checked before any request."""
    needed = {"base_model": kind == ADAPTER, "motion_tokenizer": kind != MOTION_TOKENIZER, "dataset": False}
    steps = []
    for key in ("motion_tokenizer", "dataset", "base_model"):
        name, target, (push_flag, name_flag) = getattr(card, key), flags.get(key), _FLAGS[key]
        wanted = (target or needed[key]) and kind != MOTION_TOKENIZER
        local = _local(name, _ROLES[key], key) if wanted else None
        if target and local is None:
            raise LocalReferenceError(
                f"{push_flag}: the {_ROLES[key]} is {name or 'not recorded'}, no local folder"
            )
        if local is None:
            continue
        if not target:
            raise LocalReferenceError(
                f"the {_ROLES[key]} {name} is a local folder: pass {push_flag} REPO_ID to push it too (or "
                f"{name_flag} HUB_ID if it is on the Hub)"
            )
        sub = {"dataset": DATASET, "motion_tokenizer": MOTION_TOKENIZER}.get(key)
        sub = sub or artifact_kind(local, policy_kind(local) or SFT_POLICY)
        sub_card = None if sub == DATASET else card_info_from_folder(local, kind=sub)
        steps.append(_Step(sub, local, target, sub_card, name))
    pushed = {str(step.folder.resolve()) for step in steps}
    for step in steps:  # what a pushed base needs must be on the Hub, or pushed along, too
        if step.kind in (SFT_POLICY, FULL_POLICY):
            ref = _local(step.card.motion_tokenizer, "motion tokenizer", "motion_tokenizer")
            if ref and str(ref.resolve()) not in pushed:
                raise LocalReferenceError(
                    f"the base policy {step.folder} names the motion tokenizer {ref}, a local folder: pass "
                    "--push-tokenizer REPO_ID for it (or re-record the base's motion tokenizer by Hub id)"
                )
    return [*steps, _Step(kind, folder, repo_id, card)]


# ---------------------------------------------------------------------------- the staged copy
def _on_hub(name: str | None, names: dict[str, str]) -> str | None:
    """``name``, or the Hub id its local folder was pushed to."""
    return names.get(str(Path(name).resolve()), name) if name and Path(name).exists() else name


def _substitute(text: str | None, names: dict[str, str], written: dict[str, str]) -> str | None:
    """``text`` with every pushed local path (resolved, or as written) replaced by its Hub id."""
    if text is None:
        return None
    for path, repo in sorted({**names, **written}.items(), key=lambda item: -len(item[0])):
        text = text.replace(path, repo)
    return text


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _stage(step: _Step, tmp: Path, names: dict[str, str], written: dict[str, str]) -> None:
    """Copy what ``step`` uploads into ``tmp``, every pushed local reference made its Hub id, and the card."""
    for name in upload_files(step.folder, step.kind):  # a policy's weights are linked, never rewritten
        if step.kind != ADAPTER and name.endswith(".safetensors"):
            (tmp / name).symlink_to((step.folder / name).resolve())
        else:
            shutil.copy2(step.folder / name, tmp / name)
    card = step.card
    refs = {k: _on_hub(getattr(card, k), names) for k in ("base_model", "motion_tokenizer", "dataset")}
    card = replace(card, **refs, repo_id=step.repo_id, command=_substitute(card.command, names, written))
    if step.kind == ADAPTER:
        from motion_align.policy.lora import untie_adapter_folder  # torch and PEFT: only when pushing one

        config = read_json(tmp / "adapter_config.json")
        _write_json(tmp / "adapter_config.json", {**config, "base_model_name_or_path": card.base_model})
        untie_adapter_folder(tmp)  # a T5 adapter that stock PEFT would tie to the embedding
    if card.motion_tokenizer and step.kind != MOTION_TOKENIZER:
        _write_json(tmp / MOTION_TOKENIZER_FILE, {"path": card.motion_tokenizer})
    if (tmp / TRAINING_INFO).is_file():
        info = read_json(tmp / TRAINING_INFO)
        info.update({k: getattr(card, k) for k in (*refs, "command") if k in info})
        _write_json(tmp / TRAINING_INFO, info)
    readme = str(build_model_card(tmp, card))
    write_atomic(tmp / "README.md", lambda out: Path(out).write_text(readme, encoding="utf-8"))


def _stage_dataset(step: _Step, tmp: Path) -> None:
    """A preference dataset as a dataset repo: ``data/train.jsonl`` (or ``.parquet``) and a card."""
    source = step.folder / "preferences.jsonl" if step.folder.is_dir() else step.folder
    if not source.is_file() or source.suffix not in (".jsonl", ".parquet"):
        raise ValueError(f"--push-dataset: {step.folder} is no saved preference dataset (preferences.jsonl), "
                         "nor a .jsonl or .parquet file")  # fmt: skip
    (tmp / "data").mkdir()
    shutil.copy2(source, tmp / "data" / f"train{source.suffix}")
    summary = read_json(step.folder / "preferences.json") if step.folder.is_dir() else {}
    rows = f"{summary['rows']} pairs" if "rows" in summary else "Pairs"
    card = ["---", "tags:", "- motion-align", "- motion-preferences", "---", "", f"# {step.repo_id}", "",
            f"{rows} of text-to-motion preferences (prompt, chosen, rejected, degree, source), in "
            "motion-align's schema.", "", "```python", "import datasets", "",
            f'pairs = datasets.load_dataset("{step.repo_id}", split="train")', "```", ""]  # fmt: skip
    (tmp / "README.md").write_text("\n".join(card), encoding="utf-8")


def _check_staged(tmp: Path, token: str, names: dict[str, str]) -> None:
    """Refuse a staged copy whose text names the token, or a pushed folder of this machine by its path."""
    for path in sorted(p for p in tmp.rglob("*") if p.is_file() and p.suffix != ".safetensors"):
        data = path.read_bytes()
        if token.encode() in data:
            raise HubPushError(f"{path.name} contains the Hub token: remove it before pushing")
        for local in names:
            if local.encode() in data:
                raise HubPushError(
                    f"{path.name} would name the local folder {local} on the Hub: name it by Hub id"
                )


# ---------------------------------------------------------------------------- push
def auth_help(repo_id: str, why: str) -> str:
    return f"{why}: set HF_TOKEN or run `hf auth login`; the token needs write access to {repo_id}"


def token_from_env(repo_id: str, token_env: str = "HF_TOKEN") -> str | None:
    """The token in ``$token_env``; None for an unset ``HF_TOKEN`` (the client then uses the saved login),
    HubPushError saying what to do for another variable that is not set."""
    token = os.environ.get(token_env) or None
    if token is None and token_env != "HF_TOKEN":
        raise HubPushError(auth_help(repo_id, f"environment variable {token_env} is not set"))
    return token


@contextmanager
def hub_errors(endpoint: str, repo_id: str, revision: str | None = None, card: str = "model card"):
    """Turn the client's HTTP and network errors into one-line HubPushError messages (never with the token);
    ``card`` names what a refused README.md is (the client checks its metadata as the Hub's validate-yaml)."""
    try:
        yield
    except RevisionNotFoundError as err:
        raise HubPushError(f"{repo_id} at {endpoint} has no branch {revision!r}: create it first") from err
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else None
        if status in (401, 403):
            raise HubPushError(auth_help(repo_id, f"the Hub at {endpoint} answered {status}")) from err
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise HubPushError(f"the Hub at {endpoint} refused the push to {repo_id}: {first}") from err
    except (httpx.TransportError, ConnectionError, TimeoutError, socket.gaierror) as err:
        raise HubPushError(
            f"cannot reach the Hub at {endpoint} ({type(err).__name__}: {err}): check the network and "
            f"HF_ENDPOINT (now {os.environ.get('HF_ENDPOINT', 'unset')})"
        ) from err
    except ValueError as err:
        if "README.md" not in str(err):
            raise
        message = " ".join(str(err).split())
        raise HubPushError(f"the Hub at {endpoint} refused the {card} of {repo_id}: {message}") from err


def push_artifact(
    folder: str | os.PathLike[str],
    repo_id: str,
    kind: str | None = None,
    token: str | None = None,
    private: bool = False,
    commit_message: str | None = None,
    card: ModelCardInfo | None = None,
    revision: str | None = None,
    push_base: str | None = None,
    push_tokenizer: str | None = None,
    push_dataset: str | None = None,
) -> list[PushedRepo]:
    """Push the artifact in ``folder`` (of ``kind``: read from its files when None) to ``repo_id`` with its
    card (``card``, default :func:`card_info_from_folder`), after what it needs from this machine: its
    motion tokenizer to ``push_tokenizer``, its preference dataset to ``push_dataset`` and (an adapter's, or
    a policy's) base to ``push_base``. Every repo is created if needed; ``revision`` is the artifact's branch.

    ``token`` defaults to ``HF_TOKEN`` or the saved login. Returns the repos pushed, the artifact's last.
    Raises FileNotFoundError / ValueError for a folder that is no artifact (AmbiguousArtifactError: pass
    ``kind``) and LocalReferenceError for a local base or motion tokenizer not pushed along, both before
    any request; HubPushError for auth, network, card metadata or refused pushes.
    """
    folder = Path(folder)
    if kind == ADAPTER or (kind is None and (folder / "adapter_config.json").is_file()):
        check_adapter_folder(folder)
    kind = artifact_kind(folder, kind)
    card = replace(card or card_info_from_folder(folder, kind=kind), kind=kind)
    if kind == ADAPTER and not card.motion_tokenizer and card.base_model and Path(card.base_model).is_dir():
        inherited = card_info_from_folder(card.base_model, SFT_POLICY).motion_tokenizer  # the base's
        card = replace(card, motion_tokenizer=inherited)
    flags = {"base_model": push_base, "motion_tokenizer": push_tokenizer, "dataset": push_dataset}
    steps = _plan(folder, kind, card, repo_id, flags)
    token = token or get_token()
    if not token:
        raise HubPushError(auth_help(repo_id, "no Hub token found"))
    api, names, written, pushed = HfApi(token=token), {}, {}, []
    for step in steps:
        main = step is steps[-1]
        repo_type = "dataset" if step.kind == DATASET else "model"
        message = f"Upload {KIND_NAMES.get(step.kind, step.kind)} (motion-align)"
        message = (commit_message or message) if main else message
        branch = revision if main else None
        with hub_errors(api.endpoint, step.repo_id, branch), tempfile.TemporaryDirectory() as tmp:
            step.repo_id = api.create_repo(
                step.repo_id, private=private, exist_ok=True, repo_type=repo_type
            ).repo_id
            if step.kind == DATASET:
                _stage_dataset(step, Path(tmp))
            else:
                _stage(step, Path(tmp), names, written)
            _check_staged(Path(tmp), token, names)
            commit = api.upload_folder(repo_id=step.repo_id, folder_path=tmp, commit_message=message,
                                       repo_type=repo_type, revision=branch)  # fmt: skip
        pushed.append(PushedRepo(step.kind, step.repo_id, commit.commit_url))
        names[str(step.folder.resolve())] = step.repo_id
        if step.written and "/" in step.written:  # substituted in commands as written too (not a bare name)
            written[step.written] = step.repo_id
        if not main:
            logger.info("pushed the %s %s to %s", step.kind, step.folder, step.repo_id)
    return pushed


def push_adapter(
    folder: str | os.PathLike[str],
    repo_id: str,
    token: str | None = None,
    private: bool = False,
    commit_message: str = "Upload LoRA adapter (motion-align)",
    card: ModelCardInfo | None = None,
    revision: str | None = None,
    **push_along: str | None,
) -> str:
    """:func:`push_artifact` for a LoRA adapter (``push_along``: ``push_base``, ``push_tokenizer``,
    ``push_dataset``); returns the adapter's commit URL."""
    pushed = push_artifact(
        folder, repo_id, ADAPTER, token, private, commit_message, card, revision, **push_along
    )
    return pushed[-1].url
