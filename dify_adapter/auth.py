"""API keys for the server and the plugin endpoint: several keys, each optionally limited to scopes and
knowledge ids, compared in constant time, and never logged (a key is named by its label).

Sources, all merged: ``--api-key KEY`` flags, ``MEMDOCK_API_KEYS`` (comma-separated), and a JSON keys
file (``--keys-file``) holding restricted keys::

    [{"name": "support-bot", "key": "...", "scopes": [{"agent_id": "support"}], "knowledge_ids": ["kb-1"]},
     {"name": "ops", "sha256": "<hex digest of the key>"}]

A key with ``scopes`` may only touch memories whose scope lies inside one of them (a request scope must
set every id an allowed scope sets, to the same value). A key with ``knowledge_ids`` may only query those
knowledge ids through the External Knowledge API; without ``scopes`` as well it is a retrieval-only key,
refused by every other API (its restriction would mean nothing there). No keys at all means an open
server, which `serve` allows only on a loopback address.

Presented keys are read here for every API, the server's and the plugin endpoint's alike
(`authenticate_request`): each API names the forms it reads (`CredentialForms`) and turns `MissingKey` and
`UnknownKey` into its own dialect's answer.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memdock.errors import InvalidInput
from memdock.models import Scope
from memdock.validation import make_scope

KEYS_ENV = "MEMDOCK_API_KEYS"
MIN_KEY_CHARS = 16


def digest(secret: str) -> bytes:
    """The sha256 digest keys are compared by (so comparison time does not depend on key length)."""
    return hashlib.sha256(secret.encode("utf-8")).digest()


@dataclass(frozen=True)
class ApiKey:
    """One accepted key: its sha256 digest, a label safe to log, and optional restrictions."""

    digest: bytes = field(repr=False)
    label: str
    scopes: tuple[Scope, ...] = ()
    knowledge_ids: frozenset[str] | None = None

    @property
    def unrestricted(self) -> bool:
        """True when the key may touch every scope and knowledge id."""
        return not self.scopes and self.knowledge_ids is None

    def within_scopes(self, scope: Scope) -> bool:
        """Does `scope` lie inside one of the key's `scopes` (always, when it lists none)?"""
        return not self.scopes or any(allowed.contains(scope) for allowed in self.scopes)

    def allows_scope(self, scope: Scope) -> bool:
        """May this key read or write under `scope` (a request scope, or a stored record's scope) through
        the memory APIs? A key limited to knowledge ids alone may not: it is for retrieval only."""
        if not self.scopes and self.knowledge_ids is not None:
            return False
        return self.within_scopes(scope)

    def allows_knowledge(self, knowledge_id: str, scope: Scope) -> bool:
        """May this key query `knowledge_id`, which maps to `scope`?"""
        listed = self.knowledge_ids is None or knowledge_id in self.knowledge_ids
        return listed and self.within_scopes(scope)


class KeyRing:
    """The accepted keys. Empty means an open server."""

    def __init__(self, keys: Iterable[ApiKey] = ()) -> None:
        self.keys = tuple(keys)

    def is_open(self) -> bool:
        """True when no key is configured."""
        return not self.keys

    def authenticate(self, presented: str) -> ApiKey | None:
        """The key matching `presented`, or None. Every key is compared, each in constant time."""
        wanted = digest(presented)
        found = None
        for key in self.keys:
            if hmac.compare_digest(key.digest, wanted) and found is None:
                found = key
        return found

    @classmethod
    def from_sources(
        cls, flag_keys: Sequence[str] = (), keys_file: str | Path | None = None, env: Mapping[str, str] | None = None
    ) -> KeyRing:
        """Merge keys from flags, ``MEMDOCK_API_KEYS`` and a keys file. `InvalidInput` names the bad one."""
        environ = os.environ if env is None else env
        plain = [*flag_keys, *(k.strip() for k in environ.get(KEYS_ENV, "").split(",") if k.strip())]
        keys = [plain_key(secret, f"key-{n + 1}") for n, secret in enumerate(plain)]
        if keys_file is not None:
            keys.extend(read_keys_file(keys_file))
        return cls(keys)


def plain_key(secret: str, label: str) -> ApiKey:
    """An unrestricted key; `InvalidInput` when it is too short to be a secret."""
    if len(secret) < MIN_KEY_CHARS:
        raise InvalidInput(f"an API key needs at least {MIN_KEY_CHARS} characters ({label})", field="api_key")
    return ApiKey(digest(secret), label)


def read_keys_file(path: str | Path) -> list[ApiKey]:
    """Parse a keys file (see the module docstring)."""
    try:
        entries = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"cannot read {path}: {exc}", field="keys_file") from None
    if not isinstance(entries, list):
        raise InvalidInput("must be a JSON list of keys", field="keys_file")
    return [_entry(entry, index) for index, entry in enumerate(entries)]


def _entry(entry: Any, index: int) -> ApiKey:
    where = f"keys_file[{index}]"
    if not isinstance(entry, Mapping):
        raise InvalidInput("must be an object", field=where)
    unknown = set(entry) - {"name", "key", "sha256", "scopes", "knowledge_ids"}
    if unknown:
        raise InvalidInput(f"unknown keys {sorted(unknown)}", field=where)
    label = str(entry.get("name") or f"file-key-{index + 1}")
    if isinstance(entry.get("key"), str):
        key = plain_key(entry["key"], label)
    elif isinstance(entry.get("sha256"), str):
        try:
            raw = bytes.fromhex(entry["sha256"])
        except ValueError:
            raise InvalidInput("sha256 must be a hex digest", field=where) from None
        if len(raw) != 32:
            raise InvalidInput("sha256 must be 64 hex characters", field=where)
        key = ApiKey(raw, label)
    else:
        raise InvalidInput('needs "key" or "sha256"', field=where)
    scopes = entry.get("scopes", [])
    if not isinstance(scopes, list) or not all(isinstance(s, Mapping) for s in scopes):
        raise InvalidInput("scopes must be a list of objects", field=f"{where}.scopes")
    knowledge = entry.get("knowledge_ids")
    if knowledge is not None and (not isinstance(knowledge, list) or not all(isinstance(k, str) for k in knowledge)):
        raise InvalidInput("knowledge_ids must be a list of strings", field=f"{where}.knowledge_ids")
    return ApiKey(
        key.digest, label,
        scopes=tuple(make_scope(None, dict(s), required=True) for s in scopes),
        knowledge_ids=frozenset(knowledge) if knowledge is not None else None,
    )


# -- presented keys ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CredentialForms:
    """Where an API looks for the key a request presents: ``Authorization: <scheme> <key>`` with one of
    `schemes` (lower case, compared case-insensitively), and, when `x_api_key` is set, ``X-API-Key: <key>``
    first (a non-empty ``X-API-Key`` header is then the presented key, whatever Authorization holds)."""

    schemes: frozenset[str]
    x_api_key: bool


SERVER_FORMS = CredentialForms(frozenset({"bearer", "token"}), x_api_key=True)
"""The native, mem0 server and mem0ai-api dialects: ``X-API-Key``, else ``Authorization: Bearer`` or ``Token``."""

EXTERNAL_KNOWLEDGE_FORMS = CredentialForms(frozenset({"bearer"}), x_api_key=False)
"""Dify's External Knowledge API (``memdock serve``'s ``/retrieval`` and the plugin endpoint): only
``Authorization: Bearer``."""


class CredentialError(Exception):
    """Keys are configured and the request presented no usable one."""


class MissingKey(CredentialError):
    """No key in any form the API reads: no header, an empty one, or another Authorization scheme."""


class UnknownKey(CredentialError):
    """A key in a form the API reads, but not in the key ring."""


def presented_key(authorization: str | None, x_api_key: str | None = None,
                  forms: CredentialForms = SERVER_FORMS) -> str | None:
    """The key presented in one of `forms`, stripped of surrounding blanks, or None when there is none.

    `authorization` and `x_api_key` are the raw header values (None when absent). ``X-API-Key`` is read
    only when `forms` allows it, and wins when it is non-empty. ``Authorization`` must be a scheme of
    `forms` followed by a space and a non-blank key.
    """
    if forms.x_api_key and x_api_key:
        return x_api_key.strip() or None
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() in forms.schemes and token.strip():
        return token.strip()
    return None


def authenticate_request(keys: KeyRing, authorization: str | None, x_api_key: str | None = None,
                         forms: CredentialForms = SERVER_FORMS) -> ApiKey | None:
    """The key of the ring a request presents (see `presented_key` for the headers and `forms`).

    Returns None when the ring is open: every request passes, whatever it presents. Otherwise raises
    `MissingKey` when no key is presented in one of `forms`, and `UnknownKey` when the presented key is not
    in the ring. The messages name neither the presented key nor any configured one.
    """
    if keys.is_open():
        return None
    presented = presented_key(authorization, x_api_key, forms)
    if presented is None:
        raise MissingKey("no API key in a form this API reads")
    key = keys.authenticate(presented)
    if key is None:
        raise UnknownKey("the API key is not accepted")
    return key
