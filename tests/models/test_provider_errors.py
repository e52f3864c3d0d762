"""HTTP errors of providers litellm translates, whole and streamed, reported with their status.

Strict fakes of Anthropic's and Gemini's APIs on 127.0.0.1 (``tests/models/providers.py``)
answer every request with an error status and the provider's error body. litellm opens
Gemini's stream only when its first chunk is read, so there the error surfaces from the
stream's iterator; it must still be reported as the HTTP error it is, not as an empty
reply.
"""

from __future__ import annotations

import pytest

from tanglebrain import models
from tanglebrain.errors import BackendError
from tanglebrain.models._litellm import litellm
from tanglebrain.roster import parse
from tanglebrain.trace import Call
from tests.models.providers import Fake, serve

KEY = "test-key-not-a-real-one"
MODELS = {"anthropic": "anthropic/claude-sonnet-4-5", "gemini": "gemini/gemini-2.5-flash"}
VARS = {"anthropic": "ANTHROPIC_API_KEY", "gemini": "GEMINI_API_KEY"}


@pytest.fixture(scope="module", autouse=True)
def _litellm_loaded() -> None:
    litellm()  # imported once, outside the calls' timeouts


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize(
    ("status", "kind", "retry_after"),
    [(429, "rate_limit", 7.0), (500, "server", None), (503, "server", None)],
)
@pytest.mark.parametrize("provider", ["gemini", "anthropic"])
async def test_an_http_error_keeps_its_status(
    provider: str, status: int, kind: str, retry_after: float | None, stream: bool
) -> None:
    fake = Fake(KEY, fail=status, retry_after="7" if retry_after else None)
    with serve(provider, fake):
        b = parse(
            f'[[backend]]\nid = "b"\nmodel = "{MODELS[provider]}"\napi_base = "{fake.base_url}"\n'
            f'good_at = ["x"]\ncost = 1\napi_key_env = "{VARS[provider]}"\n'
        ).backends[0]
        node = Call("subtask", b.id, b.model)
        with pytest.raises(BackendError) as caught:
            await models.complete(
                b, [{"role": "user", "content": "hi"}], call=node, env={VARS[provider]: KEY},
                timeout=30, retry=models.RetryPolicy(max_attempts=1),
                on_text=(lambda _: None) if stream else None,
            )  # fmt: skip
    err = caught.value
    assert (err.kind, err.status, err.retry_after) == (kind, status, retry_after)
    assert "empty" not in err.reason and KEY not in err.reason
    [attempt] = node.attempts
    assert (attempt.error_kind, attempt.http_status) == (kind, status)
    assert len(fake.requests) == 1
