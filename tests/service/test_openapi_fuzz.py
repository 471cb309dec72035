"""Schemathesis against the service's own OpenAPI document: no server error, ever.

Bounded (``NETBOARD_SCHEMATHESIS_EXAMPLES`` per operation, default 40) so the suite stays
fast; both schema-valid and schema-violating bodies are generated.
"""

from __future__ import annotations

import os

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

from netboard.service.app import Settings, create_app  # noqa: E402

EXAMPLES = int(os.environ.get("NETBOARD_SCHEMATHESIS_EXAMPLES", "40"))
schema = schemathesis.openapi.from_asgi(
    "/openapi.json", create_app(Settings(feedback_db=":memory:"))
)


def no_traceback(ctx: object, response: schemathesis.Response, case: object) -> bool | None:
    """No Python traceback or exception text ever reaches a client."""
    assert "Traceback" not in response.text
    return None


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_server_errors(case: schemathesis.Case) -> None:
    case.call_and_validate(checks=[not_a_server_error, no_traceback])
