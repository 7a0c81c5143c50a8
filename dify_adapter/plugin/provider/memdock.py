"""The memdock tool provider: checks the credentials by opening the backend and reading from it."""

from typing import Any

from dify_plugin import ToolProvider
from dify_plugin.errors.tool import ToolProviderCredentialValidationError

from memdock.dify_adapter.plugin_logic.backend import CredentialsError
from memdock.dify_adapter.plugin_logic.tools import validate_credentials


class MemdockProvider(ToolProvider):
    """Validates ``backend_url`` (and ``api_key``, the default scope) with a harmless read."""

    def _validate_credentials(self, credentials: dict[str, Any]) -> None:
        try:
            validate_credentials(credentials)
        except CredentialsError as exc:
            raise ToolProviderCredentialValidationError(str(exc)) from None
