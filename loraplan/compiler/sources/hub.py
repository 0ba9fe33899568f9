"""Fetch a hub model's config.json, and only that, into the standard Hugging Face cache.

Through `huggingface_hub.hf_hub_download` (imported here, lazily: it is the `hf` extra), so the
file lands where `from_pretrained` looks later and HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE and the
cache variables mean what they mean to every other Hugging Face tool. Never weights, never remote
code: the caller builds the architecture from the JSON with transformers' own classes. Every
failure is one ResolveError whose code says which (LP521-LP527, LP536), with what to do next.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from loraplan.errors import ResolveError
from loraplan.schema.diagnostic import Diagnostic

TIMEOUT_S = 10.0  # per request; a hub that does not answer in this long is reported, not waited on
_TRUE = {"1", "on", "yes", "true"}


@dataclass(frozen=True)
class Fetched:
    """A config.json in the HF cache: where, which revision was asked for, which commit it is."""

    path: Path
    revision: str
    commit: str | None
    endpoint: str


def _fail(code: str, message: str, hint: str) -> ResolveError:
    return ResolveError(message, [Diagnostic(code, "error", message, hint=hint)])


def user_offline() -> bool:
    """HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE as the user set them (loraplan's own belt is not in os.environ)."""
    return any(os.environ.get(key, "").strip().lower() in _TRUE for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def _token() -> str | None:
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    return token or None  # None: huggingface_hub falls back to the token `hf auth login` stored


def fetch_config(hub_id: str, revision: str | None = None, timeout: float = TIMEOUT_S) -> Fetched:
    """config.json of `hub_id` at `revision` (default main) in the HF cache; ResolveError when it cannot be had."""
    rev = revision or "main"
    where = f"{hub_id}@{rev}"
    if user_offline():
        raise _fail(
            "LP525",
            f"{where}: not in the local Hugging Face cache, and HF_HUB_OFFLINE is set",
            "unset HF_HUB_OFFLINE to fetch its config.json, or pass --arch path/to/config.json",
        )
    try:
        import huggingface_hub
        from huggingface_hub import constants
    except ImportError:
        raise _fail(
            "LP525",
            f"{where}: fetching its config.json needs huggingface_hub",
            "pip install 'loraplan[hf]', or pass --arch path/to/config.json",
        ) from None
    from loraplan.compiler.sources.hf_cache import hub_cache_dirs

    url = endpoint()
    with contextlib.suppress(ValueError):  # huggingface_hub ignores a malformed value too
        timeout = float(os.environ.get("HF_HUB_ETAG_TIMEOUT") or timeout)
    saved = constants.HF_HUB_OFFLINE, constants.HF_HUB_DISABLE_TELEMETRY
    constants.HF_HUB_OFFLINE = False  # the user's setting was checked above; ours only guards transformers
    constants.HF_HUB_DISABLE_TELEMETRY = True  # config.json only: no user-agent probes (/api/agent-harnesses)
    try:
        # One HEAD, no retries: a hub that is down or slow is reported within `timeout`
        # (hf_hub_download alone retries for minutes), and its own error names the cause.
        huggingface_hub.get_hf_file_metadata(
            huggingface_hub.hf_hub_url(hub_id, "config.json", revision=rev, endpoint=url),
            token=_token(),
            timeout=timeout,
            endpoint=url,
        )
        path = huggingface_hub.hf_hub_download(
            hub_id,
            "config.json",
            revision=rev,
            endpoint=url,
            token=_token(),
            etag_timeout=timeout,
            cache_dir=hub_cache_dirs()[0],  # where find_cached_config looks next time
        )
    except Exception as exc:  # each hub failure gets its own message
        raise _hub_error(exc, hub_id, rev, url, timeout) from None
    finally:
        constants.HF_HUB_OFFLINE, constants.HF_HUB_DISABLE_TELEMETRY = saved
    path = Path(path)
    return Fetched(path, rev, _commit_of(path), url)


def _commit_of(path: Path) -> str | None:
    """The snapshot folder name is the commit the hub answered with (X-Repo-Commit)."""
    parent = path.parent.name
    return parent if len(parent) == 40 else None


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    while exc is not None and exc not in out:
        out.append(exc)
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return out


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _hub_error(exc: Exception, hub_id: str, rev: str, url: str, timeout: float) -> ResolveError:
    """The one finding for this failure; huggingface_hub wraps some in LocalEntryNotFoundError, so
    the whole cause chain is read."""
    from huggingface_hub import errors

    where = f"{hub_id}@{rev}"
    has_token = _token() is not None
    token_hint = "set HF_TOKEN to a token with access" if not has_token else "check that HF_TOKEN has access"
    chain = _chain(exc)
    names = {type(e).__name__ for e in chain}

    def find(kind: type) -> BaseException | None:
        return next((e for e in chain if isinstance(e, kind)), None)

    if find(errors.GatedRepoError):
        what = "without a token" if not has_token else "and the token given has not been granted access"
        return _fail(
            "LP522",
            f"{where} is a gated model {what}",
            f"accept its licence on {url}/{hub_id} and {token_hint}; or pass --arch path/to/config.json",
        )
    if find(errors.RevisionNotFoundError):
        return _fail(
            "LP523",
            f"{hub_id} has no revision '{rev}' on {url}",
            "fix base_model_revision (Axolotl: revision_of_model): a branch, tag or full commit hash",
        )
    if find(errors.RemoteEntryNotFoundError):
        return _fail(
            "LP527",
            f"{where} has no config.json (not a transformers model repository?)",
            "point base_model / --arch at a repository or folder with a config.json",
        )
    not_found = find(errors.RepositoryNotFoundError)
    statuses = [s for s in (_status(e) for e in chain) if s]
    if not_found is not None or 401 in statuses:
        if 401 in statuses:
            return _fail(
                "LP521",
                f"{where}: 401 Unauthorized from {url}: the repository is private, or does not exist",
                f"check the name; for a private model {token_hint}",
            )
        return _fail(
            "LP521",
            f"{where}: repository not found on {url}",
            "check the spelling of the hub id (`loraplan archs` lists the bundled catalog)"
            + ("" if has_token else "; a private model needs HF_TOKEN"),
        )
    if find(errors.OfflineModeIsEnabled):
        return _fail("LP525", f"{where}: offline mode is on",
                     "unset HF_HUB_OFFLINE, or pass --arch path/to/config.json")
    if any("Timeout" in n for n in names):
        return _fail(
            "LP524",
            f"{where}: {url} did not answer within {timeout:g} s",
            "retry, check the network or proxy (HF_ENDPOINT), or pass --arch path/to/config.json",
        )
    if statuses:
        status = statuses[0]
        return _fail(
            "LP536",
            f"{where}: the hub at {url} answered HTTP {status}",
            "retry later (or check the token for a 403), or pass --arch path/to/config.json",
        )
    if names & {"ConnectError", "ConnectionError", "NetworkError", "gaierror", "ConnectionRefusedError"} or find(
        errors.LocalEntryNotFoundError
    ):
        return _fail(
            "LP524",
            f"{where}: cannot reach {url} (no network?)",
            "check the network or proxy (HF_ENDPOINT); set HF_HUB_OFFLINE=1 to stay offline, "
            "or pass --arch path/to/config.json",
        )
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return _fail("LP536", f"{where}: fetching config.json from {url} failed: {first}",
                 "retry later, or pass --arch path/to/config.json")
