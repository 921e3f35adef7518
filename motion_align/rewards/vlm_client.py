"""A client for vision-language models behind the OpenAI-compatible chat-completions protocol.

It sends ``POST {base_url}/chat/completions`` with a system message, a user message of text and image
parts (``{"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}``) and a
``response_format`` of ``{"type": "json_schema", "json_schema": {"name", "strict": true, "schema"}}``,
which OpenAI, vLLM and Ollama all accept. What comes back is checked, never trusted:

- an answer that is not JSON, a refusal, a reply without a message, or JSON the caller's ``validate``
  rejects is an *answer failure*; it is asked again ``answer_retries`` times, then recorded as a failure;
- 429, 5xx, timeouts and connection errors are retried up to ``max_retries`` times with exponential
  backoff and jitter (a ``Retry-After`` header, in seconds or as a date, is honoured up to
  ``max_backoff``), then recorded as a failure;
- other 4xx (a bad request) are recorded at once; 401, 403 and 404 stop the run with an error, since no
  request of it can succeed (a wrong key, model or ``--base-url``).

A failure is an :class:`Outcome` with ``answer=None`` and its ``failure`` kind; never an answer.
Requests run ``concurrency`` at a time (threads). Valid answers are cached on disk, one JSON file per
key (:func:`cache_key`: the sha256 of what determines the answer), so a second run asks nothing.
The API key is read from an environment variable when the client is made and goes into the
``Authorization`` header only: it is never logged, put in an error or written (failure details are
scrubbed of it in case a server echoes it). :meth:`VLMClient.usage` counts requests, retries, cache hits,
failures by kind, prompt and completion tokens (the replies' ``usage``) and their cost.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import json
import logging
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from motion_tokenizer.atomic_files import write_atomic

LOG = logging.getLogger(__name__)
#: Failure kinds that are answers of the model (asked again ``answer_retries`` times).
ANSWER_FAILURES = ("bad_response", "refusal", "malformed_json", "schema")
#: Statuses after which no request of the run can succeed.
FATAL_STATUSES = {
    401: "the key was refused",
    403: "the key may not use this model",
    404: "no such model or URL",
}


@dataclass
class VLMConfig:
    """Where and how to ask. ``api_key_env`` names the environment variable of the key (the key itself is
    never stored here); prices are in currency units per million tokens."""

    base_url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 4
    timeout: float = 60.0
    max_retries: int = 4
    answer_retries: int = 1
    backoff: float = 1.0
    max_backoff: float = 60.0
    temperature: float | None = 0.0
    max_tokens: int | None = None
    price_in: float = 0.0
    price_out: float = 0.0
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url: expected an http(s) URL such as https://api.openai.com/v1, got "
                             f"{self.base_url!r}")  # fmt: skip
        if not self.model.strip():
            raise ValueError("model: a model name is required")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {self.concurrency}")
        for name in ("timeout", "backoff", "max_backoff", "price_in", "price_out", "max_retries",
                     "answer_retries"):  # fmt: skip
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.timeout == 0:
            raise ValueError("timeout must be > 0 seconds")


@dataclass
class ChatJob:
    """One question: ``messages()`` builds the chat messages (called only on a cache miss, so images are
    drawn only when needed), ``validate(answer)`` lists what is wrong with a parsed answer (empty: valid)."""

    key: str
    messages: Callable[[], list[dict[str, Any]]]
    schema: dict[str, Any]
    schema_name: str
    validate: Callable[[Any], list[str]]


@dataclass
class Outcome:
    """The answer to a job (valid JSON), or ``answer=None`` with the ``failure`` kind and its detail."""

    answer: Any = None
    failure: str | None = None
    detail: str = ""
    cached: bool = False
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def ok(self) -> bool:
        return self.failure is None


@dataclass
class _Attempt:
    failure: str | None = None
    detail: str = ""
    answer: Any = None
    transient: bool = False
    retry_after: float | None = None


class FatalServerError(ValueError):
    """A reply after which no request of the run can succeed (401, 403, 404)."""


def cache_key(*parts: Any) -> str:
    """sha256 (hex) of the parts as canonical JSON; numpy arrays count by dtype, shape and bytes."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            array = np.ascontiguousarray(part)
            digest.update(f"array:{array.dtype.str}:{array.shape}".encode())
            digest.update(array.tobytes())
        else:
            digest.update(json.dumps(part, sort_keys=True, ensure_ascii=False).encode())
        digest.update(b"\x00")
    return digest.hexdigest()


def image_part(png: bytes) -> dict[str, Any]:
    """A chat message part holding a PNG as a base64 data URL."""
    return {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64," + base64.b64encode(png).decode()},
    }


def retry_delay(
    attempt: int, retry_after: str | None, backoff: float, cap: float, rng: random.Random
) -> float:
    """Seconds to wait before retry ``attempt`` (0 for the first): the server's ``Retry-After`` (seconds
    or an HTTP date) when given, else ``backoff * 2**attempt`` scaled by a random factor in [0.5, 1]
    (jitter, so that parallel requests do not return together); at most ``cap``."""
    if retry_after:
        try:
            wait = float(retry_after)
        except ValueError:
            try:
                wait = email.utils.parsedate_to_datetime(retry_after).timestamp() - time.time()
            except (TypeError, ValueError):
                wait = None
        if wait is not None:
            return float(min(max(wait, 0.0), cap))
    return float(min(backoff * 2**attempt, cap) * rng.uniform(0.5, 1.0))


class AnswerCache:
    """Valid answers on disk: ``<dir>/<key[:2]>/<key>.json``, written atomically. An unreadable entry is
    a miss (logged with its path), never an error."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)

    def path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            LOG.warning("ignoring the unreadable cache entry %s: %s", path, error)
            return None
        return record if isinstance(record, dict) and "answer" in record else None

    def put(self, key: str, record: dict[str, Any]) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(record, ensure_ascii=False, indent=1) + "\n"
        write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


@dataclass
class _Usage:
    counts: Counter = field(default_factory=Counter)
    failures: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, **amounts: int) -> None:
        with self.lock:
            self.counts.update(amounts)


class VLMClient:
    """Asks :class:`ChatJob`\\ s of a chat-completions server (module docstring). Use as a context manager or
    call :meth:`close`."""

    def __init__(self, config: VLMConfig, seed: int | None = None) -> None:
        self.config = config
        self.url = config.base_url.rstrip("/") + "/chat/completions"
        self._key = os.environ.get(config.api_key_env) or None
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        self._http = httpx.Client(headers=headers, timeout=httpx.Timeout(config.timeout))
        self.cache = AnswerCache(config.cache_dir) if config.cache_dir else None
        self._usage = _Usage()
        self._rng = random.Random(seed)

    def __repr__(self) -> str:  # the key is not part of it
        return (
            f"VLMClient(url={self.url!r}, model={self.config.model!r}, key from ${self.config.api_key_env})"
        )

    @property
    def has_key(self) -> bool:
        return self._key is not None

    def __enter__(self) -> VLMClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def run(self, jobs: Sequence[ChatJob]) -> list[Outcome]:
        """The outcome of every job, in order; ``concurrency`` jobs in flight at a time."""
        if len(jobs) <= 1 or self.config.concurrency == 1:
            return [self.ask(job) for job in jobs]
        with ThreadPoolExecutor(max_workers=self.config.concurrency, thread_name_prefix="vlm") as pool:
            futures = [pool.submit(self.ask, job) for job in jobs]
            try:
                return [future.result() for future in futures]
            except BaseException:
                for future in futures:
                    future.cancel()
                raise

    def ask(self, job: ChatJob) -> Outcome:
        """One job's outcome: from the cache, or asked with the retries of the module docstring."""
        hit = self.cache.get(job.key) if self.cache else None
        if hit is not None and not job.validate(hit["answer"]):
            self._usage.add(cache_hits=1, answers=1)
            return Outcome(answer=hit["answer"], cached=True)
        body: dict[str, Any] = {
            "model": self.config.model, "messages": job.messages(),
            "response_format": {"type": "json_schema", "json_schema": {
                "name": job.schema_name, "strict": True, "schema": job.schema}},
        }  # fmt: skip
        if self.config.temperature is not None:
            body["temperature"] = self.config.temperature
        if self.config.max_tokens is not None:
            body["max_tokens"] = self.config.max_tokens
        outcome = Outcome()
        transient_left, answer_left = self.config.max_retries, self.config.answer_retries
        while True:
            attempt = self._attempt(body, job, outcome)
            if attempt.failure is None:
                break
            if attempt.transient and transient_left > 0:
                wait = retry_delay(self.config.max_retries - transient_left, attempt.retry_after,
                                   self.config.backoff, self.config.max_backoff, self._rng)  # fmt: skip
                transient_left -= 1
                self._usage.add(retries=1)
                LOG.info("retrying in %.2f s after %s", wait, attempt.failure)
                time.sleep(wait)
                continue
            if attempt.failure in ANSWER_FAILURES and answer_left > 0:
                answer_left -= 1
                self._usage.add(retries=1)
                continue
            outcome.failure, outcome.detail = attempt.failure, self._scrub(attempt.detail)
            with self._usage.lock:
                self._usage.failures[attempt.failure] += 1
            LOG.warning("judge failure after %d request(s): %s: %s", outcome.requests, outcome.failure,
                        outcome.detail)  # fmt: skip
            return outcome
        outcome.answer = attempt.answer
        self._usage.add(answers=1)
        if self.cache:
            usage = {"prompt_tokens": outcome.prompt_tokens, "completion_tokens": outcome.completion_tokens}
            self.cache.put(job.key, {"model": self.config.model, "answer": attempt.answer, "usage": usage})
        return outcome

    def _attempt(self, body: dict[str, Any], job: ChatJob, outcome: Outcome) -> _Attempt:
        """One request and what its reply means."""
        outcome.requests += 1
        self._usage.add(requests=1)
        try:
            reply = self._http.post(self.url, json=body)
        except httpx.TimeoutException:
            return _Attempt("timeout", f"no reply within {self.config.timeout:g} s", transient=True)
        except httpx.TransportError as error:
            return _Attempt("connection", f"{type(error).__name__}: {error}", transient=True)
        if reply.status_code == 429 or reply.status_code >= 500:
            return _Attempt(f"http_{reply.status_code}", reply.text[:300], transient=True,
                            retry_after=reply.headers.get("retry-after"))  # fmt: skip
        if reply.status_code in FATAL_STATUSES:
            raise FatalServerError(
                f"{self.url}: HTTP {reply.status_code} ({FATAL_STATUSES[reply.status_code]}; key from "
                f"${self.config.api_key_env}, model {self.config.model!r}): {self._scrub(reply.text[:300])}"
            )
        if reply.status_code != 200:
            return _Attempt(f"http_{reply.status_code}", reply.text[:300])
        try:
            payload = reply.json()
            usage = payload.get("usage") or {}
            prompt, completion = (
                int(usage.get("prompt_tokens") or 0),
                int(usage.get("completion_tokens") or 0),
            )
            message = payload["choices"][0]["message"]
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            return _Attempt("bad_response", f"not a chat completion: {reply.text[:300]}")
        outcome.prompt_tokens += prompt
        outcome.completion_tokens += completion
        self._usage.add(prompt_tokens=prompt, completion_tokens=completion)
        if not isinstance(message, dict):
            return _Attempt("bad_response", f"choices[0].message is not an object: {message!r:.200}")
        if message.get("refusal"):
            return _Attempt("refusal", str(message["refusal"])[:300])
        content = message.get("content")
        if not isinstance(content, str):
            return _Attempt("bad_response", f"choices[0].message.content is not text: {content!r:.200}")
        try:
            answer = json.loads(content)
        except ValueError as error:
            return _Attempt("malformed_json", f"{error}: {content[:200]!r}")
        errors = job.validate(answer)
        if errors:
            return _Attempt("schema", "; ".join(errors[:5]))
        return _Attempt(answer=answer)

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "<key>") if self._key else text

    def usage(self) -> dict[str, Any]:
        """Requests, retries, answers, cache hits, failures by kind, tokens and their cost."""
        with self._usage.lock:
            counts, failures = Counter(self._usage.counts), dict(sorted(self._usage.failures.items()))
        prompt, completion = counts["prompt_tokens"], counts["completion_tokens"]
        cost = (prompt * self.config.price_in + completion * self.config.price_out) / 1e6
        return {
            "model": self.config.model, "url": self.url, "requests": counts["requests"],
            "retries": counts["retries"], "answers": counts["answers"], "cache_hits": counts["cache_hits"],
            "failures": failures, "prompt_tokens": prompt, "completion_tokens": completion,
            "price_in_per_million": self.config.price_in, "price_out_per_million": self.config.price_out,
            "cost": round(cost, 6),
        }  # fmt: skip
