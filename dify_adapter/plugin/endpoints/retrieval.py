"""``POST /retrieval``: this plugin as a Dify External Knowledge API (Dify serves it at
``/e/<hook_id>/retrieval``; register ``.../e/<hook_id>`` as the API endpoint)."""

import json
from collections.abc import Mapping

from dify_plugin import Endpoint
from werkzeug import Request, Response

from memdock.dify_adapter.plugin_logic.endpoint import answer_retrieval


class RetrievalEndpoint(Endpoint):
    """Dify's retrieval contract over the backend in the endpoint's settings."""

    def _invoke(self, r: Request, values: Mapping, settings: Mapping) -> Response:
        status, body = answer_retrieval(settings, r.headers.get("Authorization"), r.get_data(),
                                        request_id=r.headers.get("X-Request-ID"))
        return Response(json.dumps(body, ensure_ascii=False), status=status, content_type="application/json")
