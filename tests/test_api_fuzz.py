"""Property-based fuzzing of the operations API from its own OpenAPI schema (schemathesis).

Every operation gets generated requests with an admin token, so every endpoint's code runs.
No response may be a 500, and each must match the status codes and bodies the schema declares.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from api.server import create_app
from flows.config import load_settings
from tests.apiserver import ApiServer, start_server, stop_server

schemathesis = pytest.importorskip("schemathesis")
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import (  # noqa: E402
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

EXAMPLES_PER_MODE = 10


def schema_operations() -> list[tuple[str, str]]:
    """Return (method, path) of every operation, from an app built on an empty data directory."""
    home = Path(tempfile.mkdtemp(prefix="creditflow-openapi-"))
    try:
        spec = create_app(load_settings(home)).openapi()
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return [(method.upper(), path) for path, item in spec["paths"].items() for method in item]


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory):
    server = start_server(tmp_path_factory.mktemp("api_fuzz") / "home",
                          {"CREDITFLOW_MAX_UPLOAD_BYTES": "65536"})
    try:
        yield server
    finally:
        stop_server(server)
        assert "Traceback" not in server.log(), server.log()


@pytest.fixture(scope="module")
def api_schema(fuzz_server: ApiServer):
    return schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json")


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                         ids=["valid", "invalid"])
@pytest.mark.parametrize(("method", "path"), schema_operations())
def test_fuzz_operation(api_schema, fuzz_server: ApiServer, method: str, path: str,
                        mode: GenerationMode):
    operation = api_schema[path][method]
    headers = {"Authorization": f"Bearer {fuzz_server.tokens['admin']}"}

    @settings(max_examples=EXAMPLES_PER_MODE, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck), database=None)
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case) -> None:
        case.call_and_validate(base_url=fuzz_server.url, headers=headers, timeout=30,
                               checks=[not_a_server_error, status_code_conformance,
                                       response_schema_conformance])

    try:
        check()
    except Unsatisfiable:
        if mode is GenerationMode.POSITIVE:
            raise
        pytest.skip(f"{method} {path} takes no input that could be invalid")


def test_fuzz_started_no_run(fuzz_server: ApiServer):
    # The fuzz server has no applications, so every generated run request must be rejected.
    assert not list((fuzz_server.settings.home / "api_runs").glob("*.log"))
    assert not list((fuzz_server.settings.home / "uploads").iterdir())
