"""The cross-language workflow and activity. The workflow runs in the
Temporal sandbox, so this module imports only temporalio and the standard
library: the codec, boto3 and the worker set-up live in main.py."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import activity, workflow

LANGUAGE = "python"


@activity.defn(name="CrossLanguageActivity")
async def cross_language_activity(arg: dict[str, Any]) -> dict[str, Any]:
    return {"id": arg["id"], "secret": arg["secret"], "activity_language": LANGUAGE}


@workflow.defn(name="CrossLanguageWorkflow")
class CrossLanguageWorkflow:
    def __init__(self) -> None:
        self._note: str | None = None

    @workflow.run
    async def run(self, arg: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await workflow.execute_activity(
            "CrossLanguageActivity",
            arg,
            start_to_close_timeout=timedelta(seconds=30),
            result_type=dict,
        )
        await workflow.wait_condition(lambda: self._note is not None)
        return {
            "id": arg["id"],
            "secret": arg["secret"],
            "note": self._note,
            "activity_language": result["activity_language"],
            "workflow_language": LANGUAGE,
        }

    @workflow.signal(name="finish")
    def finish(self, arg: dict[str, Any]) -> None:
        self._note = arg["note"]

    @workflow.query(name="progress")
    def progress(self) -> str:
        return "waiting" if self._note is None else "done"
