"""Fuzz the OpenAPI surface with schemathesis against the real API (uvicorn, Redis, workers).

Every operation gets valid (positive) and invalid (negative) generated requests, then the stateful phase chains
them (issue 12), and every default check runs:
no 5xx, documented status codes, content types and headers, response bodies matching their schemas, invalid
data rejected. Short in CI (``REASONQ_FUZZ_EXAMPLES``, default 20 per operation and mode); the long run is
``REASONQ_FUZZ_EXAMPLES=1000 pytest tests/api/test_fuzz.py`` (README, "Fuzzing").

The schema comes from the app itself (the same document ``/openapi.json`` serves), loaded without a server so
the cases can be listed at collection; schemathesis's own pytest plugin cannot parametrize under pytest 9
(``'Function' object has no attribute '_nodeid'``), so the cases are drawn with Hypothesis directly.
"""

from __future__ import annotations

import os
from typing import Any

import jsonschema_rs
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode, checks
from schemathesis.core.parameters import ParameterLocation

from reasonq.api.main import app

EXAMPLES = int(os.environ.get("REASONQ_FUZZ_EXAMPLES", "20"))
EXCLUDED_CHECKS = {
    # A batch valid line by line can still be refused as a whole (two lines with one custom_id), which no
    # JSON Schema can express.
    "POST /v1/batches": ("positive_data_acceptance",),
    # A resume point past an ended generation's last event is refused (422: no such event can come), which depends
    # on the generation, not on the request's form: the stateful phase, which follows real ids, found it.
    "GET /v1/generations/{generation_id}/events": ("positive_data_acceptance",),
    # In multipart every part is bytes: a `file` part the fuzzer fills with the text "null" (its encoding of a
    # schema-violating null) is a four-byte file, and rightly accepted.
    "POST /v1/files": ("negative_data_rejection",),
    # An input of reasoning items alone holds no turn to send (422), which no JSON Schema can say.
    "POST /v1/responses": ("positive_data_acceptance",),
    # 503 is what readiness answers while a part is missing (e.g. before the first worker's heartbeat).
    "GET /readyz": ("not_a_server_error",),
}
DOCUMENT = app.openapi()
SCHEMA = schemathesis.openapi.from_dict(DOCUMENT)
# A generated body over the size limit is refused before it is read: 413 is a rejection too.
_REJECTION = SCHEMA.config.checks.negative_data_rejection
_REJECTION.expected_statuses = [*_REJECTION.expected_statuses, "413"]
OPERATIONS = {op.label: op for op in (result.ok() for result in SCHEMA.get_all_operations())}


_OTHER_LOCATIONS = (ParameterLocation.PATH, ParameterLocation.QUERY, ParameterLocation.HEADER, ParameterLocation.COOKIE)


def _valid_negative_body(case: Any) -> bool:
    """Whether a case made invalid in its JSON body alone holds a body the document accepts after all.

    A mutation inside one branch of a oneOf can land on another branch (a system message's role mutated to
    "user" is a valid user message), and the shrinker, which keeps any accepted "negative" case, then walks to a
    plainly valid body: CI once failed on a batch whose every role was "developer". Such a case is no negative
    case; the document's own schema (JSON Schema 2020-12, as OpenAPI 3.1 is) decides."""
    meta = case.meta
    if meta is None or not meta.is_negative_at(ParameterLocation.BODY) or case.media_type != "application/json":
        return False
    if any(meta.is_negative_at(location) for location in _OTHER_LOCATIONS):
        return False
    operation = DOCUMENT["paths"][case.operation.path][case.operation.method.lower()]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    validator = jsonschema_rs.validator_for({**schema, "components": DOCUMENT["components"]})
    try:
        return bool(validator.is_valid(case.body))
    except ValueError:  # what JSON cannot hold (a lone surrogate): not valid as sent
        return False


@pytest.fixture(scope="module")
def session() -> requests.Session:
    return requests.Session()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_openapi_surface(api_url: str, session: requests.Session, label: str, mode: GenerationMode) -> None:
    operation = OPERATIONS[label]
    excluded = [getattr(checks, name) for name in EXCLUDED_CHECKS.get(label, ())]

    @given(data=st.data())
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(data: st.DataObject) -> None:
        case = data.draw(operation.as_strategy(generation_mode=mode))
        assume(mode is GenerationMode.POSITIVE or not _valid_negative_body(case))
        case.call_and_validate(base_url=api_url, session=session, timeout=30, excluded_checks=excluded)

    try:
        run()
    except Unsatisfiable:
        if mode is GenerationMode.POSITIVE:
            raise
        pytest.skip("this operation takes no input that could be invalid")


def test_openapi_stateful_phase(api_url: str, session: requests.Session) -> None:
    """Schemathesis's stateful phase (issue 12): operations chained through the links it infers from the
    document (a generation created by POST, then read, listed, shared, followed and cancelled by its id), every
    default check on every step."""

    class Machine(SCHEMA.as_state_machine()):  # type: ignore[misc]  # a class built at run time
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"base_url": api_url, "session": session, "timeout": 30}

        def validate_response(
            self, response: Any, case: Any, additional_checks: Any = None, **kwargs: Any
        ) -> None:  # the stateless test's exclusions, per operation
            case.validate_response(
                response,
                additional_checks=additional_checks,
                excluded_checks=[getattr(checks, name) for name in EXCLUDED_CHECKS.get(case.operation.label, ())],
                transport_kwargs=kwargs or None,
                recorder=getattr(self, "recorder", None),
            )

    Machine.run(
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=6,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
    )
