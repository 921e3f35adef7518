"""Push a LoRA adapter to the Hugging Face Hub with a model card (the command line is
:mod:`motion_align.cli.push`: ``motion-align push``).

The card is read from ``training_info.json`` in the adapter folder when present, a JSON object with any
of these keys (flags override them): ``base_model`` (Hub id or path of the policy the adapter was trained
on; default: ``base_model_name_or_path`` of ``adapter_config.json``), ``motion_tokenizer`` (path or Hub id
of the VQ-VAE), ``dataset`` (preference dataset path or Hub id), ``rows`` (preference pairs trained on),
``method`` (dpo, ipo, hinge, sopo, ...), ``family`` (t5 or llama), ``license``, ``recipe`` (YAML path),
``hyperparameters`` (name -> value), ``command`` (the exact command line) and ``metrics`` (name -> number,
interval string, or ``{"mean", "ci95"}``). The endpoint is ``HF_ENDPOINT`` (default https://huggingface.co).

Secrets never reach the card: hyper-parameters whose name says token/secret/password/API key are
redacted, as are token-like strings in the command; nothing is read from the environment; and a push is
refused if any file to upload contains the token it is made with.
"""

from __future__ import annotations

import json
import os
import re
import socket
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import httpx
from huggingface_hub import HfApi, ModelCard, ModelCardData, get_token
from huggingface_hub.errors import HfHubHTTPError, RevisionNotFoundError
from huggingface_hub.utils import filter_repo_objects

from motion_tokenizer.atomic_files import write_atomic

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
TRAINING_INFO = "training_info.json"
# Top-level files only ("*/*" is ignored): adapter, card, tokenizer files, motion_vocab.json,
# motion_tokenizer.json and other JSON metadata; never checkpoints/, optimizer states or pickles.
ALLOW_PATTERNS = [*ADAPTER_FILES, "README.md", "*.json", "*.model", "merges.txt", "vocab.txt", "*.jinja"]
IGNORE_PATTERNS = ["*/*", "checkpoint*", "optimizer*", "scheduler*", "rng_state*", "training_args*"]
PIPELINE_TAGS = {"t5": "text2text-generation", "llama": "text-generation"}
_TASK_FAMILIES = {"SEQ_2_SEQ_LM": "t5", "CAUSAL_LM": "llama"}
_FAMILY_NAMES = {"t5": "T5", "llama": "LLaMA"}
_SECRET_WORDS = {"token", "secret", "password", "passwd", "apikey", "credential", "credentials"}
_TOKEN_LIKE = re.compile(r"\b(?:hf|sk|ghp|gho|xoxb|xoxp)[-_][A-Za-z0-9_-]{8,}")


class HubPushError(RuntimeError):
    """A push that the Hub refused or could not be reached for; the message says what to do."""


@dataclass
class ModelCardInfo:
    """What the model card of a pushed adapter says (see the module docstring for each field)."""

    base_model: str
    motion_tokenizer: str | None = None
    dataset: str | None = None
    rows: int | None = None
    method: str | None = None
    family: str | None = None
    license: str | None = None
    recipe: str | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    command: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    repo_id: str | None = None  # for the "How to load" snippet; push_adapter fills it in


# ---------------------------------------------------------------------------- model card
def _is_secret_name(name: str) -> bool:
    parts = [p for p in re.split(r"[^a-z0-9]+", name.lower()) if p]
    joined = {a + b for a, b in zip(parts, parts[1:])}  # api_key -> apikey
    return "env" not in parts and bool((set(parts) | joined) & _SECRET_WORDS)


def redact(text: str) -> str:
    """``text`` with token-like strings and the values of secret-named options/variables masked."""
    parts = re.split(r"(\s+)", _TOKEN_LIKE.sub("***", text))  # words at even indices, spaces at odd
    for i in range(0, len(parts), 2):
        name, sep, _ = parts[i].partition("=")
        if sep and _is_secret_name(name):
            parts[i] = f"{name}=***"
        elif not sep and parts[i].startswith("-") and _is_secret_name(parts[i]) and i + 2 < len(parts):
            parts[i + 2] = "***"
    return "".join(parts)


def _is_hub_id(name: str | None) -> bool:
    """A Hub repo id ("org/name" or "name") that is not a path on this machine."""
    return bool(name) and re.fullmatch(r"(?:[\w.-]+/)?[\w.-]+", name) is not None and not Path(name).exists()


def _cell(value: Any) -> str:
    if isinstance(value, dict) and "mean" in value:
        value = f"{value['mean']:.3f}" + (f" ± {value['ci95']:.3f}" if "ci95" in value else "")
    elif isinstance(value, float):
        value = f"{value:.4g}"
    elif isinstance(value, (dict, list)):
        value = json.dumps(value)
    return redact(str(value)).replace("|", "\\|").replace("\n", " ")


def _table(header: tuple[str, str], rows: dict[str, Any], secret_names: bool = False) -> list[str]:
    lines = [f"| {header[0]} | {header[1]} |", "|---|---|"]
    for name, value in rows.items():
        shown = "(redacted)" if secret_names and _is_secret_name(name) else _cell(value)
        lines.append(f"| {_cell(name)} | {shown} |")
    return lines


def _read_json(path: Path) -> dict[str, Any]:
    """The JSON object in ``path`` ({} if there is no such file); ValueError naming the file otherwise."""
    try:
        record = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(record, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return record


def _card_body(info: ModelCardInfo, family: str | None, lora: dict[str, Any], method: str) -> str:
    name, missing = info.repo_id or "motion-align LoRA adapter", "not recorded"
    adapter = ", ".join(f"{k} {lora[k]}" for k in ("r", "lora_alpha", "lora_dropout") if k in lora)
    base, motion_tokenizer = redact(info.base_model), redact(info.motion_tokenizer or missing)
    kind = _FAMILY_NAMES.get(family or "", "T5/LLaMA")
    lines = [f"# {name}", "", f"A LoRA adapter for a {kind} text-to-motion token policy, "
             f"aligned with {method or 'preference optimisation'} by motion-align.", "", "## Model", "",
             f"- Base model: `{base}`", f"- Motion tokenizer: `{motion_tokenizer}`",
             f"- Adapter: LoRA ({adapter or missing})", "", "## Training data", "",
             f"- Preference dataset: `{redact(info.dataset or missing)}`",
             f"- Rows: {info.rows if info.rows is not None else missing}", "", "## Metrics", ""]  # fmt: skip
    lines += _table(("metric", "value"), info.metrics) if info.metrics else [missing]
    lines += ["", "## Recipe", "", f"Recipe: `{redact(info.recipe or missing)}`", ""]
    if info.hyperparameters:
        lines += _table(("hyper-parameter", "value"), info.hyperparameters, secret_names=True)
    command = redact(info.command) if info.command else missing
    fence = "`" * max([3, *(len(run) + 1 for run in re.findall("`+", command))])  # longer than any inside
    lines += ["", "## Command", "", f"{fence}bash", command, fence, "", "## How to load", "", "```python",
              "from peft import PeftModel", "from motion_align.policy.model import load_policy", "",
              f'base, tokenizer = load_policy("{base}", dropout=0.0)',
              f'model = PeftModel.from_pretrained(base, "{info.repo_id or "<repo_id>"}")']  # fmt: skip
    if not _is_hub_id(info.base_model):
        lines.insert(-2, f"# {base} is a local policy folder: use it, or its copy on the Hub")
    if info.motion_tokenizer:
        load = f'motion_tokenizer = MotionVQVAE.from_pretrained("{motion_tokenizer}")'
        lines += ["", "from motion_tokenizer import MotionVQVAE", "", load]
    return "\n".join([*lines, "```", ""])


def build_model_card(folder: str | os.PathLike[str], info: ModelCardInfo) -> ModelCard:
    """The card of the adapter in ``folder``: Hub metadata (``ModelCardData``) plus the body."""
    folder = Path(folder)
    lora = _read_json(folder / "adapter_config.json")
    family = info.family or _TASK_FAMILIES.get(str(lora.get("task_type")))
    method = info.method or info.hyperparameters.get("loss_type")
    methods = [method] if isinstance(method, str) else list(method or [])
    methods = [{"sigmoid": "dpo"}.get(str(m).lower(), str(m).lower()) for m in methods]  # TRL's DPO loss
    data = ModelCardData(
        library_name="peft",
        base_model=info.base_model if _is_hub_id(info.base_model) else None,
        datasets=[info.dataset] if _is_hub_id(info.dataset) else None,
        license=info.license,
        pipeline_tag=PIPELINE_TAGS.get(family or ""),
        tags=["motion-align", "text-to-motion", *methods, "lora"],
    )
    label = info.method if info.method and not info.method.islower() else "/".join(methods).upper()
    body = _card_body(info, family, lora, label)  # "IPO-LoRA" as written; "ipo" / "sigmoid" as IPO / DPO
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")


def write_model_card(folder: str | os.PathLike[str], info: ModelCardInfo) -> Path:
    """Write (atomically) ``README.md``, the model card of the adapter in ``folder``; returns its path."""
    card = build_model_card(folder, info)
    path = Path(folder) / "README.md"
    write_atomic(path, lambda tmp: Path(tmp).write_text(str(card), encoding="utf-8"))
    return path


# ---------------------------------------------------------------------------- push
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
    _read_json(folder / "adapter_config.json")
    return folder


def upload_files(folder: Path) -> list[str]:
    """The files of ``folder`` that a push uploads (ALLOW_PATTERNS minus IGNORE_PATTERNS)."""
    names = sorted(p.name for p in folder.iterdir() if p.is_file())
    return list(filter_repo_objects(names, allow_patterns=ALLOW_PATTERNS, ignore_patterns=IGNORE_PATTERNS))


def auth_help(repo_id: str, why: str) -> str:
    return f"{why}: set HF_TOKEN or run `hf auth login`; the token needs write access to {repo_id}"


@contextmanager
def _hub_errors(endpoint: str, repo_id: str, revision: str | None):
    """Turn the client's HTTP and network errors into HubPushError messages (never with the token)."""
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
        raise HubPushError(f"the Hub at {endpoint} refused the model card of {repo_id}: {err}") from err


def push_adapter(
    folder: str | os.PathLike[str],
    repo_id: str,
    token: str | None = None,
    private: bool = False,
    commit_message: str = "Upload LoRA adapter (motion-align)",
    card: ModelCardInfo | None = None,
    revision: str | None = None,
) -> str:
    """Create ``repo_id`` (if needed), write the card into ``folder`` and upload the adapter files.

    ``token`` defaults to ``HF_TOKEN`` or the saved login. Returns the commit URL. Raises
    FileNotFoundError for a folder without an adapter and HubPushError for auth, network, card
    metadata or refused pushes.
    """
    folder = check_adapter_folder(folder)
    token = token or get_token()
    if not token:
        raise HubPushError(auth_help(repo_id, "no Hub token found"))
    api = HfApi(token=token)
    with _hub_errors(api.endpoint, repo_id, revision):
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
        if card is not None:
            write_model_card(folder, replace(card, repo_id=repo_id))
        for name in upload_files(folder):  # text files only: weights are binary and may be large
            if not name.endswith(".safetensors") and token.encode() in (folder / name).read_bytes():
                raise HubPushError(f"{folder / name} contains the Hub token: remove it before pushing")
        commit = api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message=commit_message,
                                   revision=revision, allow_patterns=ALLOW_PATTERNS,
                                   ignore_patterns=IGNORE_PATTERNS)  # fmt: skip
    return commit.commit_url


# ---------------------------------------------------------------------------- command line
def metrics_from_file(path: str | os.PathLike[str], row: str | None = None) -> dict[str, Any]:
    """Metrics for the card from a JSON file: a flat name -> value object, or the ``metrics.json`` of
    ``motion-align evaluate`` (its ``row``, or its only row besides real/reconstruction)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such metrics file")
    record = _read_json(path)
    if "rows" not in record:
        return record
    rows = record["rows"]
    candidates = [row] if row else [n for n in rows if n not in ("real", "reconstruction")]
    if len(candidates) != 1 or candidates[0] not in rows:
        raise ValueError(f"{path}: pick a row with --metrics-row (rows: {', '.join(rows)})")
    chosen = rows[candidates[0]]
    events = {f"event {name}": value for name, value in chosen.get("events", {}).items()}
    return {**chosen["metrics"], **events}


def push_recipe_output(folder: str | os.PathLike[str], config: Any) -> str:
    """Push a recipe's saved ``folder`` to ``config.hub_model_id`` with the model card its
    ``training_info.json`` describes (what ``--push_to_hub true`` does at the end of an alignment recipe)."""
    card = card_info_from_folder(folder)
    return push_adapter(folder, config.hub_model_id, token=config.hub_token, card=card)


def card_info_from_folder(folder: str | os.PathLike[str], **overrides: Any) -> ModelCardInfo:
    """ModelCardInfo from ``training_info.json`` in ``folder`` with ``overrides`` (None: not given)."""
    folder = Path(folder)
    path, known = folder / TRAINING_INFO, {f.name for f in fields(ModelCardInfo)} - {"repo_id"}
    info = _read_json(path)
    unknown = sorted(set(info) - known)
    if unknown:
        raise ValueError(f"{path}: unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    info.update({k: v for k, v in overrides.items() if v is not None})
    info.setdefault("base_model", _read_json(folder / "adapter_config.json").get("base_model_name_or_path"))
    if not info["base_model"]:
        raise ValueError(f"{folder}: no base model recorded: pass --base-model or add base_model to {path}")
    for key, kind in (("rows", int), ("hyperparameters", dict), ("metrics", dict)):
        if info.get(key) is not None and not isinstance(info[key], kind):
            raise ValueError(f"{path}: field {key!r} must be of type {kind.__name__}, got {info[key]!r}")
    return ModelCardInfo(**info)
