"""Schemathesis hooks for openapi/check.sh.

1. Auth: the fuzzing account's API key, renewed when revoked. Fuzzing calls every operation,
`DELETE /account/api-keys/{id}` included, and its stateful phase feeds it the ids that
`GET /account/api-keys` lists, so it revokes the very key it fuzzes with (which the API allows). Every later request would answer 401 and test nothing else. When a
request answers 401, schemathesis asks again for a key (`retry_on`); the key in use is checked
and, if it no longer works, a new one is created for the same account with the operator CLI.

2. One rule the document states but OpenAPI 3.0 cannot express: event field keys are 1–256
characters (`EventFields`; OpenAPI 3.0 has no `propertyNames`). Generated *valid* events whose
`fields` break it are dropped, as the document would if it could; the relay answers them 422, as
documented, and tests/it cover that answer. Nothing else is filtered, and every check runs.

Environment: PINGPILOT_URL, PINGPILOT_FUZZ_ACCOUNT, PINGPILOT_FUZZ_KEY, PINGPILOT_BIN,
PINGPILOT_CONFIG.
"""

import json
import os
import subprocess

import httpx
import schemathesis
from schemathesis.generation import GenerationMode

MAX_FIELD_KEY_CHARS = 256


@schemathesis.auth(retry_on=[401])
class RenewedKey:
    def __init__(self) -> None:
        self.key = os.environ["PINGPILOT_FUZZ_KEY"]
        self.renewed = 0

    def works(self, key: str) -> bool:
        answer = httpx.get(
            os.environ["PINGPILOT_URL"].rstrip("/") + "/api/v1/account",
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        )
        return answer.status_code != 401

    def get(self, case, context):
        if not self.works(self.key):
            created = subprocess.run(
                [
                    os.environ["PINGPILOT_BIN"],
                    "key",
                    "create",
                    "--account",
                    os.environ["PINGPILOT_FUZZ_ACCOUNT"],
                    "--config",
                    os.environ["PINGPILOT_CONFIG"],
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            self.key = json.loads(created.stdout)["apiKey"]
            self.renewed += 1
        return self.key

    def set(self, case, data, context):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"


@schemathesis.hook
def filter_case(context, case):
    operation = case.operation
    sends_event = operation.method.upper() == "POST" and operation.path in ("/event", "/events")
    positive = case.meta is not None and case.meta.generation.mode == GenerationMode.POSITIVE
    if not (sends_event and positive and isinstance(case.body, dict)):
        return True
    fields = case.body.get("fields")
    if not isinstance(fields, dict):
        return True
    return all(1 <= len(key) <= MAX_FIELD_KEY_CHARS for key in fields)
