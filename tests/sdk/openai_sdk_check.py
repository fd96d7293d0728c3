#!/usr/bin/env python3
"""Drives Tollgate's OpenAI-compatible surface with the official OpenAI Python SDK.

Usage: openai_sdk_check.py <base_url> <tenant_key> <alias>

`base_url` is the gateway's `/v1` base (e.g. http://127.0.0.1:8080/v1). Prints one JSON
summary on stdout: the chat completion of `alias` as the SDK parsed it, the ids listed by
`models.list()`, and the exceptions the SDK raised for an unknown alias and for a bad key.
Any unexpected exception is printed on stderr and the exit status is non-zero.

Run by tests/it/sdk.rs (with TOLLGATE_SDK_PYTHON, which .ci/run sets).
"""

import json
import sys
import traceback

import openai
from openai import OpenAI
from openai.types import Model
from openai.types.shared import ErrorObject
from openai.types.chat import ChatCompletion

MESSAGES = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "What is 1 + 1?"},
    {"role": "assistant", "content": "2."},
    {"role": "user", "content": "And 2 + 2?"},
]
MAX_TOKENS = 64


def client(base_url, api_key):
    # No retries: an error must show up once, at once; the timeout bounds a hang.
    return OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=20.0)


def expected_error(call):
    """Runs `call`, which should fail with an HTTP error; reports what the SDK raised."""
    try:
        result = call()
    except openai.APIStatusError as e:
        body = e.body if isinstance(e.body, dict) else {}
        # The SDK hands over the `error` object of the body (or the whole body).
        inner = body.get("error", body) if isinstance(body, dict) else {}
        # The error body must be the OpenAI error object (message, type, param, code).
        ErrorObject.model_validate(inner)
        return {
            "exception": type(e).__name__,
            "status_code": e.status_code,
            "code": getattr(e, "code", None),
            "type": getattr(e, "type", None),
            "message": inner.get("message") if isinstance(inner, dict) else None,
        }
    return {"exception": None, "unexpected_result": repr(result)[:500]}


def main(argv):
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    base_url, api_key, alias = argv[1], argv[2], argv[3]
    c = client(base_url, api_key)

    raw = c.chat.completions.with_raw_response.create(
        model=alias, messages=MESSAGES, max_tokens=MAX_TOKENS
    )
    completion = raw.parse()
    # The SDK builds its objects leniently; validating the raw bodies against its own types
    # catches a missing or mistyped field it would otherwise let through.
    ChatCompletion.model_validate(raw.http_response.json())
    raw_models = c.models.with_raw_response.list()
    for entry in raw_models.http_response.json()["data"]:
        Model.model_validate(entry)
    choice = completion.choices[0]
    usage = completion.usage
    summary = {
        "openai_version": openai.__version__,
        "chat": {
            "id": completion.id,
            "object": completion.object,
            "created": completion.created,
            "model": completion.model,
            "role": choice.message.role,
            "content": choice.message.content,
            "finish_reason": choice.finish_reason,
            "usage": None
            if usage is None
            else {
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "total_tokens": usage.total_tokens,
            },
            "request_id_header": raw.headers.get("x-tollgate-request-id"),
        },
        "models": [m.id for m in raw_models.parse()],
        "unknown_model": expected_error(
            lambda: c.chat.completions.create(
                model=alias + "-does-not-exist", messages=MESSAGES
            )
        ),
        "bad_key": expected_error(
            lambda: client(base_url, "tg-not-a-real-key").chat.completions.create(
                model=alias, messages=MESSAGES
            )
        ),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except Exception:  # noqa: BLE001 - any failure is reported and fails the run
        traceback.print_exc()
        sys.exit(1)
