"""The API against its own OpenAPI document: schemathesis generates requests for every
operation, sent with a valid admin key; no answer may be a 5xx or break the document's
response schemas.

Two runs: one with schemathesis's own strategies (at least 2,000 requests), and a hostile one
(at least 5,000) in which every free-form string of a request is written the way an attacker
would: lone surrogates, NUL, control characters, other scripts' digits, values of up to
180,000 characters. Longer runs go by hand:
`SPENDGATE_SCHEMATHESIS_EXAMPLES=500 .venv/bin/python -m pytest tests/server/test_schema.py`.
"""

from __future__ import annotations

import copy
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import positive_data_acceptance

from spendgate import Gate
from spendgate.testing import FrozenClock
from tests.conftest import small_config
from tests.serving import app_for, bearer, make_keys

EXAMPLES = os.environ.get("SPENDGATE_SCHEMATHESIS_EXAMPLES")


# Hostile text: what an attacker writes into any string field. Bodies may carry anything JSON
# can spell (lone surrogates, NUL, control characters, other scripts' digits, very long
# values); a URL cannot carry a lone surrogate (it has no UTF-8 form), so query and path
# values get the rest.
_NASTY = st.sampled_from(
    ["\x00", "\ud800", "\udfff", "a\x00b", "\u202e", "１", "١٢", "1_000", "1e400", "-0", "\ufeff"]
)
_LONG = st.builds(
    lambda text, times: text * times, st.text(min_size=1, max_size=3), st.integers(2_000, 60_000)
)
_URL_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
URL_HOSTILE = st.one_of(_NASTY.filter(lambda s: not _surrogate(s)), _URL_TEXT, _LONG)
BODY_HOSTILE = st.one_of(_NASTY, st.text(st.characters(codec=None), max_size=40), _LONG)


def _surrogate(text: str) -> bool:
    return any("\ud800" <= c <= "\udfff" for c in text)


def _hostile(document: dict[str, Any]) -> dict[str, Any]:
    """`document` with every free-form string (no enum, format or pattern) given a hostile
    format: `sg-url` in parameters, `sg-body` elsewhere (request bodies and their components;
    responses keep their meaning, as an unknown format constrains nothing)."""
    document = copy.deepcopy(document)

    def mark(node: Any, fmt: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "string" and not {"enum", "format", "pattern"} & node.keys():
                node["format"] = fmt
            for value in node.values():
                mark(value, fmt)
        elif isinstance(node, list):
            for value in node:
                mark(value, fmt)

    for methods in document["paths"].values():
        for operation in methods.values():
            mark(operation.get("parameters", []), "sg-url")
    mark(document.get("components", {}), "sg-body")
    for methods in document["paths"].values():
        for operation in methods.values():
            mark(operation.get("requestBody", {}), "sg-body")
    return document


schemathesis.openapi.format("sg-url", URL_HOSTILE)
schemathesis.openapi.format("sg-body", BODY_HOSTILE)


def fuzz(tmp_path: Path, document: dict[str, Any] | None, examples: int) -> Counter[str]:
    """Send `examples` generated requests per operation of the app's document (or of
    `document`, a rewriting of it); fails on a 5xx or an answer its schema does not allow.
    Returns the number of requests sent per operation, and (under `"hostile"`) how many
    carried NUL, a lone surrogate or a value over 1,000 characters."""
    gate = Gate.open(
        f"sqlite:///{tmp_path / 'fuzz.db'}", config=small_config(), clock=FrozenClock()
    )
    keys = make_keys(gate)
    app = app_for(gate)
    schema = schemathesis.openapi.from_dict(document or app.openapi())
    schema.app = app
    headers = bearer(keys.admin)
    sent: Counter[str] = Counter()
    operations = [op.ok() for op in schema.get_all_operations()]
    assert len(operations) >= 30
    try:
        for operation in operations:

            @given(case=operation.as_strategy())
            @settings(
                max_examples=int(EXAMPLES or examples),
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def check(case: schemathesis.Case) -> None:
                sent[case.operation.label] += 1
                sent["hostile"] += _carries_hostile(case)
                # A schema cannot say which sources or budgets exist: a valid-looking body
                # naming an unknown one is rightly refused (422), so that check is left out.
                case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])

            check()
    finally:
        gate.close()
    assert len(sent) == len(operations) + 1  # every operation was exercised
    return sent


def _carries_hostile(case: schemathesis.Case) -> bool:
    def strings(value: Any) -> Iterator[str]:
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            for key, item in value.items():
                yield from strings(key)
                yield from strings(item)
        elif isinstance(value, list | tuple):
            for item in value:
                yield from strings(item)

    parts = (case.body, case.query, case.path_parameters)
    return any(
        "\x00" in text or _surrogate(text) or len(text) > 1_000
        for part in parts
        for text in strings(part)
    )


@pytest.mark.slow
@pytest.mark.timeout(900)  # 2,000 generated requests: 108 s measured on a loaded machine
def test_no_operation_answers_5xx_or_breaks_its_schema(tmp_path: Path) -> None:
    sent = fuzz(tmp_path, None, examples=70)
    assert sent.total() - sent["hostile"] >= 2_000, sent


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_hostile_text_in_any_field_gets_no_5xx(tmp_path: Path) -> None:
    gate = Gate.open("memory://", config=small_config())
    document = _hostile(app_for(gate).openapi())
    gate.close()
    sent = fuzz(tmp_path, document, examples=150)
    requests = sent.total() - sent["hostile"]
    assert requests >= 5_000, sent
    assert sent["hostile"] >= requests // 10, sent  # the strategies reached the server


def test_the_document_lists_every_route_with_response_models(tmp_path: Path) -> None:
    gate = Gate.open("memory://", config=small_config())
    document = app_for(gate).openapi()
    gate.close()
    operations = [
        (path, method, op)
        for path, methods in document["paths"].items()
        for method, op in methods.items()
    ]
    assert len(operations) >= 30
    for path, method, op in operations:
        ok = next(code for code in op["responses"] if code.startswith("2"))
        content = op["responses"][ok].get("content", {})
        assert content, f"{method.upper()} {path} has no response model"
        if path != "/healthz":
            assert {"401", "403", "422"} <= set(op["responses"]), f"{method.upper()} {path}"
            assert op.get("security"), f"{method.upper()} {path} declares no security"
