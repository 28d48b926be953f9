"""How the real worker closes, at its seam with the SDK: ``ClaudeSDKClient`` is replaced
by a stand-in that behaves as the CLI does at the end of its input. A CLI whose call is
held at the relay (an armed worker's) does not exit until that call is answered; the
SDK then waits 5 s before it terminates the process (subprocess_cli.close), which made
every shutdown and every eviction of an armed worker take 5 s."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from claude_agent_sdk import ClaudeAgentOptions

from claude_code_api.engine import worker as worker_module
from claude_code_api.engine.protocol import WorkerKey
from claude_code_api.engine.relay import Lane
from claude_code_api.engine.worker import Worker


class HeldCall:
    """The CLI of an armed worker: its call waits at the relay, and its process ends
    (``disconnect`` returns) only once that call has been answered."""

    instances: list[HeldCall] = []

    def __init__(self, options: ClaudeAgentOptions) -> None:
        self.call: asyncio.Task[bool] | None = None
        self.lane: Lane | None = None
        self.answered_before_disconnect: bool | None = None
        HeldCall.instances.append(self)

    async def connect(self) -> None:
        return None

    async def get_server_info(self) -> dict[str, Any]:
        return {}

    async def receive_messages(self) -> Any:
        await asyncio.Event().wait()
        yield  # pragma: no cover - never reached

    async def disconnect(self) -> None:
        assert self.call is not None
        # Let the loop run what was already woken, as the SDK's awaits would.
        await asyncio.sleep(0)
        self.answered_before_disconnect = self.call.done()
        await asyncio.wait_for(asyncio.shield(self.call), 1)


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> type[HeldCall]:
    HeldCall.instances = []
    monkeypatch.setattr(worker_module, "ClaudeSDKClient", HeldCall)
    return HeldCall


async def test_closing_an_armed_worker_answers_its_held_call_before_ending_the_cli(
        cli: type[HeldCall]) -> None:
    lane = Lane("secret", "http://127.0.0.1:1/w/secret")
    worker = Worker(WorkerKey(), ClaudeAgentOptions(), lane=lane)
    await worker.start(5)
    worker.arm("placeholder")
    (process,) = cli.instances
    process.call = asyncio.create_task(lane.wait())
    await asyncio.sleep(0)
    assert lane.held.is_set()  # the call waits, as an armed worker's does

    await worker.close()

    assert process.answered_before_disconnect is True
    assert process.call.result() is False  # refused: it never goes upstream
    assert worker.state == "closed"
