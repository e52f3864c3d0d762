from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests import netguard

netguard.install()

from tanglebrain.sim import Simulator  # noqa: E402


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator() as s:
        yield s


@pytest.fixture(scope="module")
def sim_thread() -> Iterator[Simulator]:
    s = Simulator().start_in_thread()
    try:
        yield s
    finally:
        s.stop()
