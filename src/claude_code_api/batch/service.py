"""Files and background batches (OpenAI's Files and Batch APIs).

A batch lives as a task of this service: ``validating`` (its input file is
parsed; a bad line fails the whole batch, as OpenAI does) → ``in_progress``
(items run through the runner; each result is stored as it finishes) →
``completed`` with an output file (items answered 200) and an error file (the
others), or ``cancelling`` → ``cancelled`` with the results so far.

Items are claimed one at a time with a lease (``batch.lease_seconds``) that
this process renews while it runs them, so several processes sharing a store can
work on one batch, and the items of one that died are taken over when their
leases end: every process sweeps the store for running batches with items
nobody holds. On shutdown the tasks are cancelled, their leases given up, and
their batches stay ``in_progress``; the next start (or another replica) goes on
with the items without a stored result. Everything belongs to the key that made
it: another key gets 404.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from ..access.caller import Caller
from ..access.keys import LOCAL, KeyStore
from ..errors import Conflict, GatewayError, InvalidRequest, NotFound, PayloadTooLarge
from ..settings import BatchSettings
from .models import (
    COMPLETION_WINDOW,
    ENDPOINTS,
    BatchItem,
    CreateBatchRequest,
    LineError,
    parse_input,
)
from .runner import Runner
from .store import RUNNING, BatchStore, StoredFile

log = logging.getLogger(__name__)

MAX_REPORTED_ERRORS = 1000
WINDOW_SECONDS = 24 * 3600


class Batches:
    def __init__(self, settings: BatchSettings, store: BatchStore, runner: Runner,
                 keys: KeyStore, ready: Callable[[float], Awaitable[bool]]) -> None:
        self.settings = settings
        self.store = store
        self.runner = runner
        self.keys = keys
        self.ready = ready  # waits (at most so many seconds) for the pool's first workers
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._cancelling: set[str] = set()
        self._resumer: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._closing = False
        self.holder = "replica_" + uuid.uuid4().hex[:12]  # whose leases are whose

    # -- files ---------------------------------------------------------------------
    def add_file(self, owner: str, filename: str, purpose: str, content: bytes) -> StoredFile:
        if purpose != "batch":
            raise InvalidRequest(f"purpose `{purpose}` is not supported here; files are for "
                                 "batches (purpose `batch`)", param="purpose")
        if len(content) > self.settings.max_file_bytes:
            raise self.too_large()
        file = StoredFile(_new_id("file-"), owner, filename, purpose, len(content),
                          int(time.time()))
        self.store.add_file(file, content)
        return file

    def too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"files may be at most {self.settings.max_file_bytes} bytes "
                               "(batch.max_file_bytes)", param="file")

    def files(self, owner: str, purpose: str | None = None) -> list[StoredFile]:
        return self.store.files(owner, purpose)

    def file(self, owner: str, file_id: str, param: str | None = None) -> StoredFile:
        file = self.store.file(file_id)
        if file is None or file.owner != owner:
            raise NotFound(f"No such File object: {file_id}", param=param)
        return file

    def content(self, owner: str, file_id: str) -> bytes:
        self.file(owner, file_id)
        return self.store.content(file_id) or b""

    def delete_file(self, owner: str, file_id: str) -> None:
        self.file(owner, file_id)
        self.store.delete_file(file_id)

    # -- batches -------------------------------------------------------------------
    def create(self, owner: str, request: CreateBatchRequest) -> dict[str, Any]:
        if request.endpoint not in ENDPOINTS:
            raise InvalidRequest(f"batches here run {', '.join(ENDPOINTS)}, not "
                                 f"`{request.endpoint}`", param="endpoint")
        if request.completion_window != COMPLETION_WINDOW:
            raise InvalidRequest(f"completion_window must be `{COMPLETION_WINDOW}`",
                                 param="completion_window")
        file = self.file(owner, request.input_file_id, "input_file_id")
        if file.purpose != "batch":
            raise InvalidRequest(f"file {file.id} was not uploaded with purpose `batch`",
                                 param="input_file_id")
        now = int(time.time())
        body: dict[str, Any] = {
            "id": _new_id("batch_"), "object": "batch", "endpoint": request.endpoint,
            "input_file_id": file.id, "completion_window": request.completion_window,
            "status": "validating", "created_at": now, "expires_at": now + WINDOW_SECONDS,
            "request_counts": {"total": 0, "completed": 0, "failed": 0}}
        if request.metadata is not None:
            body["metadata"] = request.metadata
        self.store.save_batch(owner, body)
        self._start(owner, body["id"])
        return body

    def get(self, owner: str, batch_id: str) -> dict[str, Any]:
        return self._view(self._owned(owner, batch_id))

    def page(self, owner: str, after: str | None, limit: int
             ) -> tuple[list[dict[str, Any]], bool]:
        """A page of the owner's batches, newest first, and whether more follow."""
        batches = self.store.batches(owner)
        if after is not None:
            ids = [b["id"] for b in batches]
            batches = batches[ids.index(after) + 1:] if after in ids else []
        return [self._view(b) for b in batches[:limit]], len(batches) > limit

    def cancel(self, owner: str, batch_id: str) -> dict[str, Any]:
        body = self._owned(owner, batch_id)
        if body["status"] in ("cancelling", "cancelled"):
            return self._view(body)
        if body["status"] not in RUNNING:
            raise Conflict(f"the batch is {body['status']}; only a running batch can be "
                           "cancelled")
        body.update(status="cancelling", cancelling_at=int(time.time()))
        if not self.store.update_batch(body, RUNNING):
            return self.get(owner, batch_id)  # it ended meanwhile
        task = self._tasks.get(batch_id)
        if task is None:
            self._finish(owner, batch_id, "cancelled")
        else:
            # The task's end (see _ended) writes what was done and the final status.
            self._cancelling.add(batch_id)
            task.cancel()
        return self._view(body)

    def _owned(self, owner: str, batch_id: str) -> dict[str, Any]:
        found = self.store.batch(batch_id)
        if found is None or found[0] != owner:
            raise NotFound(f"No batch found with id '{batch_id}'.")
        return found[1]

    def _view(self, body: dict[str, Any]) -> dict[str, Any]:
        """The batch as stored, with live request counts while it runs."""
        if body["status"] not in RUNNING:
            return body
        completed, failed = self.store.counts(body["id"])
        counts = {"total": body["request_counts"]["total"], "completed": completed,
                  "failed": failed}
        return {**body, "request_counts": counts}

    # -- running -------------------------------------------------------------------
    def _start(self, owner: str, batch_id: str) -> None:
        task = asyncio.create_task(self._guarded(owner, batch_id), name=f"batch {batch_id}")
        self._tasks[batch_id] = task
        task.add_done_callback(functools.partial(self._ended, owner, batch_id))

    async def _guarded(self, owner: str, batch_id: str) -> None:
        try:
            await self._run(owner, batch_id)
        except GatewayError as exc:
            self._fail(owner, batch_id, [LineError(exc.code or "error", exc.message)])
        except Exception:
            log.exception("batch %s failed", batch_id)
            self._fail(owner, batch_id, [LineError("internal_error", "the batch stopped on "
                                                   "an internal error of the gateway")])

    async def _run(self, owner: str, batch_id: str) -> None:
        body = self._owned(owner, batch_id)
        content = self.store.content(body["input_file_id"])
        if content is None:
            self._fail(owner, batch_id, [LineError("file_not_found", "the input file was "
                                                   "deleted before the batch ran")])
            return
        items, errors = parse_input(content, body["endpoint"], self.settings.max_file_requests)
        if errors:
            self._fail(owner, batch_id, errors)
            return
        if body["status"] == "validating":
            body.update(status="in_progress", in_progress_at=int(time.time()),
                        request_counts={"total": len(items), "completed": 0, "failed": 0})
            self.store.update_batch(body, ("validating",))  # or another process did
        self.store.open_items(batch_id, len(items))
        caller = self._caller(owner, batch_id)
        await self.runner.run(
            caller, self._claimed(batch_id, items), self.runner.limit(caller),
            lambda outcome: self._store_result(batch_id, outcome.index, outcome.ok,
                                               outcome.line()))
        self._settle(owner, batch_id)

    def _claimed(self, batch_id: str, items: list[BatchItem]
                 ) -> Iterator[tuple[int, BatchItem]]:
        """The batch's items as this process claims them, one as each lane asks."""
        while not self._closing:
            index = self.store.claim(batch_id, self.holder, self.settings.lease_seconds)
            if index is None or index >= len(items):
                return
            yield index, items[index]

    def _store_result(self, batch_id: str, index: int, ok: bool, line: dict[str, Any]
                      ) -> None:
        if not self.store.add_result(batch_id, index, ok, line):
            log.info("batch %s item %d: answered elsewhere first, or the batch ended; "
                     "this answer is dropped", batch_id, index)

    def _settle(self, owner: str, batch_id: str) -> None:
        """After this process found nothing more to claim: finish the batch if nothing
        is left, else leave it to the processes holding its last items."""
        found = self.store.batch(batch_id)
        if found is None:
            return
        status = found[1]["status"]
        if status == "cancelling":
            self._finish(owner, batch_id, "cancelled")
        elif status == "in_progress" and self.store.pending(batch_id) == 0:
            self._finish(owner, batch_id, "completed")

    def _caller(self, owner: str, batch_id: str) -> Caller:
        key = None if owner == LOCAL else self.keys.get(owner)
        if owner != LOCAL and key is None:
            raise NotFound(f"the API key `{owner}` that made the batch no longer exists")
        return Caller(key=key, request_id=batch_id, route="/v1/batches")

    def _ended(self, owner: str, batch_id: str, task: asyncio.Task[None]) -> None:
        self._tasks.pop(batch_id, None)
        if batch_id not in self._cancelling or self._closing:
            return  # cancelled by shutdown: stays in progress, resumed on the next start
        self._cancelling.discard(batch_id)
        found = self.store.batch(batch_id)
        if found is not None and found[1]["status"] == "cancelling":
            self._finish(owner, batch_id, "cancelled")

    def _finish(self, owner: str, batch_id: str, status: str) -> None:
        """Write the output and error files and the final status."""
        body = self._owned(owner, batch_id)
        results = self.store.results(batch_id)
        files = []
        for ok, key, suffix in ((True, "output_file_id", "output"),
                                (False, "error_file_id", "error")):
            lines = [line for good, line in results if good is ok]
            if not lines:
                continue
            content = ("\n".join(lines) + "\n").encode()
            file = StoredFile(_new_id("file-"), owner, f"{batch_id}_{suffix}.jsonl",
                              "batch_output", len(content), int(time.time()))
            files.append((file, content))
            body[key] = file.id
        completed = sum(1 for good, _ in results if good)
        now = int(time.time())
        if status == "completed":
            body["finalizing_at"] = now
        body.update({"status": status, f"{status}_at": now,
                     "request_counts": {"total": body["request_counts"]["total"],
                                        "completed": completed,
                                        "failed": len(results) - completed}})
        if self.store.finish(body, files):
            log.info("batch %s %s: %d completed, %d failed", batch_id, status, completed,
                     len(results) - completed)

    def _fail(self, owner: str, batch_id: str, errors: list[LineError]) -> None:
        body = self._owned(owner, batch_id)
        body.update(status="failed", failed_at=int(time.time()),
                    errors={"object": "list",
                            "data": [e.wire() for e in errors[:MAX_REPORTED_ERRORS]]})
        self.store.finish(body, [])
        log.info("batch %s failed: %s", batch_id, errors[0].message)

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        if self.store.db.kind == "sqlite":
            # One process per SQLite file: leases left by a killed run are its own.
            self.store.release()
        self._resumer = asyncio.create_task(self._sweep(), name="batch sweeper")
        self._heartbeat = asyncio.create_task(self._renew(), name="batch leases")

    async def _sweep(self) -> None:
        """Take up running batches that no process works on: those a stopped server
        left, and those whose holder's leases ended (a replica that died)."""
        await self.ready(120)
        every = min(5.0, self.settings.lease_seconds / 4)
        while True:
            for owner, body in self.store.unfinished():
                if body["id"] not in self._tasks:
                    self._take_up(owner, body)
            await asyncio.sleep(every)

    def _take_up(self, owner: str, body: dict[str, Any]) -> None:
        batch_id = body["id"]
        if body["status"] == "cancelling":
            self._finish(owner, batch_id, "cancelled")
        elif body["status"] == "validating":
            # Its maker validates it at once; one that is still validating after a
            # lease's time lost its maker.
            if time.time() - body["created_at"] > self.settings.lease_seconds:
                self._start(owner, batch_id)
        elif self.store.claimable(batch_id) or not self.store.pending(batch_id):
            log.info("taking up batch %s (%s)", batch_id, body["status"])
            self._start(owner, batch_id)

    async def _renew(self) -> None:
        """Keep this process's leases alive while it runs their items."""
        while True:
            await asyncio.sleep(self.settings.lease_seconds / 3)
            try:
                self.store.renew(self.holder, self.settings.lease_seconds)
            except Exception:
                log.exception("could not renew the batch leases of %s", self.holder)

    async def close(self) -> None:
        self._closing = True
        tasks = list(self._tasks.values())
        tasks += [t for t in (self._resumer, self._heartbeat) if t is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=10)
        self.store.release(self.holder)  # the next start, or another replica, goes on
        self.store.close()


def _new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]
