"""llm-server breaking its contract: the day1 gate must block it.

Each test starts a real local stack whose reference llm-server breaks one
part of its contract (``--llm-fault``): it accepts any bearer token, replies to
a NATS request with another request's correlation_id, or ends a stream
without ``data: [DONE]``. The shipped profile passes the same checks.
"""

from __future__ import annotations

import pytest
from helpers import SUITES, local_profile

CONTRACT = str(SUITES / "acceptance" / "test_llm_contract.py")
LLM = 'role = "llm-server"\n'


def _broken(tmp_path, fault: str):
    return local_profile(tmp_path, {LLM: f'{LLM}args = ["--llm-fault", "{fault}"]\n'})


def test_honest_gateway_passes(tmp_path, run_suite):
    result = run_suite(local_profile(tmp_path), CONTRACT)

    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["day1 *pass*"])


def test_open_auth_fails(tmp_path, run_suite):
    result = run_suite(_broken(tmp_path, "open-auth"), CONTRACT)

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*without a bearer token got 200, not 401: the gateway is open*"]
    )


def test_crossed_replies_fail(tmp_path, run_suite):
    result = run_suite(_broken(tmp_path, "crossed-replies"), CONTRACT)

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*request stackcheck-*-* got the reply of *: replies are mixed up*"]
    )


def test_unterminated_stream_fails(tmp_path, run_suite):
    result = run_suite(_broken(tmp_path, "unterminated-stream"), CONTRACT)

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*ended without data: [[]DONE[]] after * chunks*"])


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ([1, 2], "reply is not a JSON object"),
        ({"error": "boom", "error_code": "internal"}, "got an error reply: 'boom'"),
        (
            {"text": "", "model": "m", "tokens_used": 1, "correlation_id": "c"},
            "reply to c has no text",
        ),
        (
            {"text": "t", "model": "m", "tokens_used": True, "correlation_id": "c"},
            "reply to c has tokens_used True",
        ),
        (
            {"text": "t", "model": 3, "tokens_used": 2, "correlation_id": "c"},
            "reply to c has no model string",
        ),
    ],
)
def test_reply_problems_named(reply, expected):
    from pytest_stackcheck.probes.llm_contract import reply_problems

    problems = reply_problems(reply, "c")

    assert len(problems) == 1
    assert expected in problems[0]
