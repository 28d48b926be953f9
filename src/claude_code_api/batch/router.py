"""Thin routes of batches: ``POST /v1/batch`` and OpenAI's Files and Batch APIs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import UploadFile

from ..deps import BatchesDep, CallerDep
from ..dialects.streams import unless_disconnected
from ..errors import InvalidRequest
from ..openapi import BODY, openai_errors
from .models import BatchRequest, CreateBatchRequest, unique_ids

router = APIRouter(tags=["Batches"])
_FORM_OVERHEAD = 64 * 1024  # multipart boundaries and the other fields
# The upload is read by hand (to refuse a large one before reading it), so its form is
# described here rather than by a model.
_UPLOAD = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file", "purpose"],
    "properties": {"file": {"type": "string", "format": "binary",
                            "description": "JSONL: one batch request a line"},
                   "purpose": {"type": "string", "enum": ["batch"]}}}}}}}
_OWNED = openai_errors(401, 404)
_BYTES = {"description": "the file's content", "content": {
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}


@router.post("/v1/batch", response_model=None,
             responses=openai_errors(*BODY, 401, 429))
async def run_batch(body: BatchRequest, request: Request, batches: BatchesDep,
                    caller: CallerDep) -> Response:
    """Run every request now (at most the pool's size at once) and answer with each
    result in input order; a failed item does not stop the others."""
    most = batches.settings.max_requests
    if len(body.requests) > most:
        raise InvalidRequest(f"a batch holds at most {most} requests (batch.max_requests); "
                             f"this one holds {len(body.requests)}", param="requests")
    unique_ids(body.requests)
    runner = batches.runner
    outcomes = await unless_disconnected(request, runner.run(
        caller, enumerate(body.requests), runner.limit(caller, body.max_concurrency)))
    if outcomes is None:
        return Response(status_code=499)
    completed = sum(1 for o in outcomes if o.ok)
    return JSONResponse({"object": "batch.result", "results": [o.result() for o in outcomes],
                         "counts": {"total": len(outcomes), "completed": completed,
                                    "failed": len(outcomes) - completed}})


# -- files ---------------------------------------------------------------------------
@router.post("/v1/files", responses=openai_errors(400, 401, 413), openapi_extra=_UPLOAD)
async def upload_file(request: Request, batches: BatchesDep,
                      caller: CallerDep) -> dict[str, Any]:
    size = request.headers.get("content-length", "")
    if size.isdigit() and int(size) > batches.settings.max_file_bytes + _FORM_OVERHEAD:
        raise batches.too_large()  # before reading it
    form = await request.form(max_files=1, max_fields=8)
    upload, purpose = form.get("file"), form.get("purpose")
    if not isinstance(upload, UploadFile):
        raise InvalidRequest("send the file as multipart/form-data field `file`",
                             param="file")
    if not isinstance(purpose, str):
        raise InvalidRequest("the form field `purpose` is required", param="purpose")
    content = await upload.read()
    file = batches.add_file(caller.owner, upload.filename or "upload.jsonl",
                            purpose, content)
    return file.wire()


@router.get("/v1/files", responses=openai_errors(401))
async def list_files(batches: BatchesDep, caller: CallerDep,
                     purpose: str | None = None) -> dict[str, Any]:
    files = [f.wire() for f in batches.files(caller.owner, purpose)]
    return {"object": "list", "data": files, "has_more": False,
            "first_id": files[0]["id"] if files else None,
            "last_id": files[-1]["id"] if files else None}


@router.get("/v1/files/{file_id}", responses=_OWNED)
async def get_file(file_id: str, batches: BatchesDep, caller: CallerDep) -> dict[str, Any]:
    return batches.file(caller.owner, file_id).wire()


@router.get("/v1/files/{file_id}/content", response_class=Response,
             responses={200: _BYTES, **_OWNED})
async def file_content(file_id: str, batches: BatchesDep, caller: CallerDep) -> Response:
    return Response(batches.content(caller.owner, file_id),
                    media_type="application/octet-stream")


@router.delete("/v1/files/{file_id}", responses=_OWNED)
async def delete_file(file_id: str, batches: BatchesDep, caller: CallerDep) -> dict[str, Any]:
    batches.delete_file(caller.owner, file_id)
    return {"id": file_id, "object": "file", "deleted": True}


# -- batches -------------------------------------------------------------------------
@router.post("/v1/batches", responses=openai_errors(*BODY, 401, 404, 429))
async def create_batch(body: CreateBatchRequest, batches: BatchesDep,
                       caller: CallerDep) -> dict[str, Any]:
    return batches.create(caller.owner, body)


@router.get("/v1/batches", responses=openai_errors(400, 401))
async def list_batches(batches: BatchesDep, caller: CallerDep, after: str | None = None,
                       limit: int = Query(20, ge=1, le=100)) -> dict[str, Any]:
    data, more = batches.page(caller.owner, after, limit)
    return {"object": "list", "data": data, "has_more": more,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None}


@router.get("/v1/batches/{batch_id}", responses=_OWNED)
async def get_batch(batch_id: str, batches: BatchesDep, caller: CallerDep) -> dict[str, Any]:
    return batches.get(caller.owner, batch_id)


@router.post("/v1/batches/{batch_id}/cancel",
             responses=openai_errors(*BODY, 401, 404, 409))
async def cancel_batch(batch_id: str, batches: BatchesDep, caller: CallerDep) -> dict[str, Any]:
    return batches.cancel(caller.owner, batch_id)
