from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Iterator

import pytest

from tests import netguard

netguard.install()

from tanglebrain.sim import Simulator  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Caches (the model map's answers) go to a temporary folder, not the user's."""
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator() as s:
        yield s


@pytest.fixture
def blackhole() -> Iterator[str]:
    """An API base on loopback whose connections hang, as to a host down or firewalled.

    Its accept queue is full, so the kernel drops the SYNs of new connections.
    """
    with socket.socket() as server, socket.socket() as filler:
        server.bind(("127.0.0.1", 0))
        server.listen(0)  # room for one pending connection, never accepted
        filler.connect(server.getsockname())
        yield f"http://127.0.0.1:{server.getsockname()[1]}/v1"


@pytest.fixture(scope="module")
def sim_thread() -> Iterator[Simulator]:
    s = Simulator().start_in_thread()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="session", autouse=True)
def warm_transport() -> None:
    """Make one plain and one streamed call with tools before any test runs.

    litellm's first call in a process imports modules inside the event loop for seconds
    on a loaded machine; a test with a short timeout (a hang under test) would see that
    pause as its backend's silence. Paid once per test process instead.
    """
    import anyio

    from tanglebrain import models
    from tanglebrain.roster import parse
    from tanglebrain.trace import Call

    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}

    async def warm() -> None:
        async with Simulator() as s:
            text = f'[[backend]]\nid = "w"\nmodel = "openai/echo"\napi_base = "{s.base_url}"\n'
            backend = parse(text + 'good_at = ["x"]\ncost = 0\n').backends[0]
            for on_text in (None, lambda _: None):
                await models.complete(
                    backend, [{"role": "user", "content": "warm"}], call=Call("subtask", "w", ""),
                    env={}, timeout=300, retry=models.RetryPolicy(max_attempts=1), tools=[tool],
                    on_text=on_text,
                )  # fmt: skip

    anyio.run(warm)
