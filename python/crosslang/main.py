"""The Python side of the cross-language tests: a worker, a starter, and
decode-file, which decodes payloads given as JSON. The worker prints
"ready" once polling and "stopped" once shut down after SIGTERM or SIGINT.

    python crosslang/main.py worker|starter|decode-file FILE

Configured by TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, KMS_ENDPOINT, KMS_KEY_ID,
AWS_REGION (with AWS credentials), TASK_QUEUE, WORKFLOW_COUNT and
WORKFLOW_ID_PREFIX. decode-file reads {"payloads": [...]} (payloads in
protobuf JSON) and prints {"payloads": [...]} or {"error": TYPE,
"message": ...}, with the codec's KMS calls, as one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from datetime import timedelta
from typing import Any

from google.protobuf import json_format
from temporalio.api.common.v1 import Payload
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError
from temporalio.worker import Worker
from workflows import LANGUAGE, CrossLanguageWorkflow, cross_language_activity

from kmscodec import KMSCodec, KMSCodecError, data_converter, kms_client

QUERY_DEADLINE_SECONDS = 240.0


def env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise SystemExit(f"{name} is not set")
    return value


def new_codec() -> KMSCodec:
    client = kms_client(region_name=env("AWS_REGION"), endpoint_url=env("KMS_ENDPOINT"))
    return KMSCodec(client, env("KMS_KEY_ID"), namespace=env("TEMPORAL_NAMESPACE"))


async def connect() -> Client:
    return await Client.connect(
        env("TEMPORAL_ADDRESS"),
        namespace=env("TEMPORAL_NAMESPACE"),
        data_converter=data_converter(new_codec()),
    )


async def run_worker() -> None:
    client = await connect()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    worker = Worker(
        client,
        task_queue=env("TASK_QUEUE"),
        workflows=[CrossLanguageWorkflow],
        activities=[cross_language_activity],
    )
    async with worker:
        print("ready", flush=True)
        await stop.wait()
    print("stopped", flush=True)


async def wait_for_progress(handle: WorkflowHandle[Any, Any], want: str) -> None:
    """Query "progress" until it answers want. A query fails while no worker
    has picked the workflow up yet, or times out on a busy server: such
    failures are retried until the deadline, like any other answer."""
    deadline = time.monotonic() + QUERY_DEADLINE_SECONDS
    last: object = None
    while True:
        try:
            last = await handle.query("progress", rpc_timeout=timedelta(seconds=10))
            if last == want:
                return
        except RPCError as e:
            last = e
        if time.monotonic() > deadline:
            raise RuntimeError(f"{handle.id}: progress never became {want!r} (last: {last!r})")
        await asyncio.sleep(0.1)


async def run_one(client: Client, prefix: str, i: int) -> dict[str, Any]:
    workflow_id = f"{prefix}-{i}"
    arg = {"id": workflow_id, "secret": f"s3cret-{workflow_id}"}
    handle: WorkflowHandle[Any, Any] = await client.start_workflow(
        "CrossLanguageWorkflow", arg, id=workflow_id, task_queue=env("TASK_QUEUE")
    )
    await wait_for_progress(handle, "waiting")
    await handle.signal("finish", {"note": f"from-{LANGUAGE}"})
    result: dict[str, Any] = await handle.result()
    expected = {"id": arg["id"], "secret": arg["secret"], "note": f"from-{LANGUAGE}"}
    for key, want in expected.items():
        if result.get(key) != want:
            raise RuntimeError(f"{workflow_id}: result {key} is {result.get(key)!r}, want {want!r}")
    return result


async def run_starter() -> None:
    client = await connect()
    count = int(env("WORKFLOW_COUNT"))
    prefix = env("WORKFLOW_ID_PREFIX")
    results = await asyncio.gather(*(run_one(client, prefix, i) for i in range(count)))
    summary = {
        "completed": len(results),
        "workflow_languages": sorted({r["workflow_language"] for r in results}),
        "activity_languages": sorted({r["activity_language"] for r in results}),
    }
    print(json.dumps(summary), flush=True)


async def run_decode_file(request: dict[str, Any]) -> None:
    payloads = [json_format.ParseDict(p, Payload()) for p in request["payloads"]]
    codec = new_codec()
    answer: dict[str, Any]
    try:
        decoded = await codec.decode(payloads)
        answer = {"payloads": [json_format.MessageToDict(p) for p in decoded]}
    except KMSCodecError as e:
        answer = {"error": type(e).__name__, "message": str(e)}
    answer["kms_calls"] = dict(codec.kms_calls)
    print(json.dumps(answer), flush=True)


def main(argv: list[str]) -> None:
    mode = argv[1] if len(argv) > 1 else ""
    if mode == "worker":
        asyncio.run(run_worker())
    elif mode == "starter":
        asyncio.run(run_starter())
    elif mode == "decode-file" and len(argv) == 3:
        with open(argv[2], encoding="utf-8") as f:
            request = json.load(f)
        asyncio.run(run_decode_file(request))
    else:
        raise SystemExit("usage: main.py worker|starter|decode-file FILE")


if __name__ == "__main__":
    try:
        main(sys.argv)
    except Exception as e:  # the starter's contract: the reason on stderr, exit 1
        print(f"{type(e).__name__}: {e}", file=sys.stderr, flush=True)
        # Exit at once: finalizing the interpreter while the SDK's native
        # threads still hold work can abort the process, hiding the status.
        os._exit(1)
