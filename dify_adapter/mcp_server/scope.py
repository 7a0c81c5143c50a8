"""Which scope an MCP tool call runs in, and why it can never leave the server's.

The server's scope ids (``--user-id`` and friends) are fixed for the process. By default a call may not
choose ids at all: naming a scope id with another value than the server's is refused (`ScopeNotAllowed`),
naming the same value is harmless. With ``--allow-scope-arguments`` a call may add the ids the server
leaves open (narrowing, or choosing a user when the server fixes none) but still never change a fixed
one. Every call runs under a non-empty scope, so a memory id from another scope is never found. On HTTP,
a restricted API key (``--keys-file``) must also allow the resulting scope, as in ``memdock serve``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from memdock.dify_adapter.auth import ApiKey
from memdock.dify_adapter.plugin_logic.tools import ScopeRule, ToolCall
from memdock.errors import InvalidInput
from memdock.models import Scope
from memdock.validation import make_scope


class ScopeNotAllowed(InvalidInput):
    """A call names a scope the server (or its API key) does not let it use."""


@dataclass(frozen=True)
class ScopePolicy:
    """The server's fixed scope ids and whether calls may add ids of their own."""

    fixed: Scope
    allow_arguments: bool = False

    @classmethod
    def from_ids(cls, ids: dict[str, Any], *, allow_arguments: bool) -> ScopePolicy:
        """The policy for these server ids; `InvalidInput` for a bad id, `ScopeRequired` (naming the
        options) when there is none and calls may not choose one."""
        fixed = make_scope(None, ids, required=False)
        if fixed.is_empty() and not allow_arguments:
            raise InvalidInput("memdock mcp needs --user-id, --agent-id, --run-id or --app-id "
                               "(or --allow-scope-arguments to let each call name its scope)", field="user_id")
        return cls(fixed, allow_arguments)

    def scope_of(self, call: ToolCall, key: ApiKey | None = None) -> Scope:
        """The scope `call` runs in; `ScopeNotAllowed` when it would reach outside the server's scope or
        the key's, `ScopeRequired` when no id is known at all."""
        fixed = self.fixed.ids()
        named = {name: value for name, value in call.scope_ids().items() if value is not None}
        for name, value in named.items():
            if name in fixed and fixed[name] != value:
                raise ScopeNotAllowed(f"this server's scope is fixed to {name}={fixed[name]!r}", field=name)
            if name not in fixed and not self.allow_arguments:
                raise ScopeNotAllowed("this server's scope is fixed; a call cannot choose it "
                                      "(start memdock mcp with --allow-scope-arguments to allow that)", field=name)
        scope = make_scope(None, {**named, **fixed}, required=True)
        if key is not None and not key.allows_scope(scope):
            raise ScopeNotAllowed(f"this API key may not access scope {scope.ids()}", field=next(iter(scope.ids())))
        return scope

    def rule(self, key: ApiKey | None = None) -> ScopeRule:
        """The `ToolCall` scope rule for a caller with `key` (every call needs a scope, whatever `required`)."""
        return lambda call, _required: self.scope_of(call, key)
