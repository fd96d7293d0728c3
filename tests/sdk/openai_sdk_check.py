#!/usr/bin/env python3
"""Drives Tollgate's OpenAI-compatible surface with the official OpenAI Python SDK.

Usage: openai_sdk_check.py <base_url> <tenant_key> <alias> [tools|parse|embeddings]

`base_url` is the gateway's `/v1` base (e.g. http://127.0.0.1:8080/v1). Prints one JSON
summary on stdout. By default: the chat completion of `alias` as the SDK parsed it, the
same request streamed (`stream=True`) with and without `stream_options.include_usage`,
the ids listed by `models.list()`, and the exceptions the SDK raised for an unknown alias
and for a bad key. With `tools`: a two-tool call, whole and streamed, the streamed one
accumulated both by hand (by `index`, as SDK users do) and with the SDK's own
`ChatCompletionStreamState`. With `parse`: `chat.completions.parse` with a pydantic model as
`response_format` (structured output), the parsed object reported. With `embeddings`:
`embeddings.create` three ways — the SDK's default (it asks for base64 and decodes it
itself), `encoding_format="float"` and `encoding_format="base64"` (the raw string, decoded
here as float32 little-endian) — plus the request id and the usage. Any unexpected exception is printed on stderr and the exit
status is non-zero. Nothing here measures time: the caller asserts on the summary only.

Run by tests/it/sdk.rs (with TOLLGATE_SDK_PYTHON, which .ci/run sets).
"""

import json
import sys
import traceback

import openai
from openai import OpenAI
from openai.types import Model
from openai.types.shared import ErrorObject
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk

MESSAGES = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "What is 1 + 1?"},
    {"role": "assistant", "content": "2."},
    {"role": "user", "content": "And 2 + 2?"},
]
MAX_TOKENS = 64
TOOL_MESSAGES = [
    {"role": "user", "content": "What are the weather and the time in Paris?"},
]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "Current time in an IANA time zone.",
            "parameters": {
                "type": "object",
                "properties": {"timezone": {"type": "string"}},
                "required": ["timezone"],
            },
        },
    },
]


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


def usage_dict(usage):
    if usage is None:
        return None
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def tool_calls_dict(tool_calls):
    return [
        {
            "id": call.id,
            "type": call.type,
            "name": call.function.name,
            "arguments": call.function.arguments,
        }
        for call in tool_calls or []
    ]


def consume_stream(stream, state=None):
    """Iterates a `stream=True` answer the way SDK users do and reports what it carried.

    The text is collected delta by delta as it arrives; tool calls are accumulated by
    `index` (id, type and name on the first fragment, `arguments` pieces after); the usage
    is taken from the chunk with `choices == []`. Each chunk is also validated against the
    SDK's own `ChatCompletionChunk` type (the SDK builds its objects leniently) and, when
    given, fed to a `ChatCompletionStreamState`.
    """
    pieces = []
    roles = []
    finish_reasons = []
    usages = []
    ids = set()
    models = set()
    objects = set()
    calls = {}
    call_order = []
    chunks = 0
    with stream:
        for chunk in stream:
            chunks += 1
            ChatCompletionChunk.model_validate(chunk.to_dict())
            if state is not None:
                state.handle_chunk(chunk)
            ids.add(chunk.id)
            models.add(chunk.model)
            objects.add(chunk.object)
            if chunk.usage is not None:
                usages.append(
                    {"usage": usage_dict(chunk.usage), "choices": len(chunk.choices)}
                )
            for choice in chunk.choices:
                delta = choice.delta
                if delta.role is not None:
                    roles.append(delta.role)
                if delta.content:
                    pieces.append(delta.content)
                for tc in delta.tool_calls or []:
                    if tc.index not in calls:
                        calls[tc.index] = {
                            "index": tc.index,
                            "id": None,
                            "type": None,
                            "name": None,
                            "arguments": "",
                            "fragments": 0,
                        }
                        call_order.append(tc.index)
                    call = calls[tc.index]
                    if tc.id:
                        call["id"] = tc.id
                    if tc.type:
                        call["type"] = tc.type
                    if tc.function is not None:
                        if tc.function.name:
                            call["name"] = tc.function.name
                        if tc.function.arguments:
                            call["arguments"] += tc.function.arguments
                            call["fragments"] += 1
                if choice.finish_reason is not None:
                    finish_reasons.append(choice.finish_reason)
    return {
        "chunks": chunks,
        "content": "".join(pieces),
        "pieces": len(pieces),
        "roles": roles,
        "finish_reasons": finish_reasons,
        "usage_chunks": usages,
        "usage": usages[-1]["usage"] if usages else None,
        "ids": sorted(i for i in ids if i is not None),
        "models": sorted(m for m in models if m is not None),
        "objects": sorted(o for o in objects if o is not None),
        "tool_calls": [calls[i] for i in call_order],
    }


def tools_main(c, alias):
    whole = c.chat.completions.create(
        model=alias, messages=TOOL_MESSAGES, tools=TOOLS, max_tokens=MAX_TOKENS
    )
    state = ChatCompletionStreamState(input_tools=TOOLS)
    streamed = consume_stream(
        c.chat.completions.create(
            model=alias,
            messages=TOOL_MESSAGES,
            tools=TOOLS,
            max_tokens=MAX_TOKENS,
            stream=True,
            stream_options={"include_usage": True},
        ),
        state,
    )
    final = state.get_final_completion()
    final_choice = final.choices[0]
    choice = whole.choices[0]
    return {
        "openai_version": openai.__version__,
        "whole": {
            "content": choice.message.content,
            "finish_reason": choice.finish_reason,
            "tool_calls": tool_calls_dict(choice.message.tool_calls),
            "usage": usage_dict(whole.usage),
        },
        "stream": streamed,
        "stream_state": {
            "content": final_choice.message.content,
            "finish_reason": final_choice.finish_reason,
            "tool_calls": tool_calls_dict(final_choice.message.tool_calls),
            "usage": usage_dict(final.usage),
        },
    }


def parse_main(c, alias):
    from pydantic import BaseModel

    class Sum(BaseModel):
        expression: str
        result: int

    completion = c.chat.completions.parse(
        model=alias,
        messages=[{"role": "user", "content": "What is 2 + 2? Answer as JSON."}],
        response_format=Sum,
        max_tokens=MAX_TOKENS,
    )
    message = completion.choices[0].message
    return {
        "openai_version": openai.__version__,
        "parsed": message.parsed.model_dump() if message.parsed else None,
        "parsed_type": type(message.parsed).__name__,
        "content": message.content,
        "refusal": message.refusal,
        "tool_calls": tool_calls_dict(message.tool_calls),
        "finish_reason": completion.choices[0].finish_reason,
        "usage": usage_dict(completion.usage),
    }


def embeddings_main(c, alias):
    import base64
    import struct

    texts = ["The food was delicious", "and the waiter was kind"]

    def vectors(result):
        return [list(d.embedding) for d in sorted(result.data, key=lambda d: d.index)]

    raw = c.embeddings.with_raw_response.create(model=alias, input=texts)
    default = raw.parse()
    as_float = c.embeddings.create(model=alias, input=texts, encoding_format="float")
    as_base64 = c.embeddings.create(model=alias, input=texts[0], encoding_format="base64")
    encoded = as_base64.data[0].embedding
    if not isinstance(encoded, str):
        raise AssertionError(f"base64 asked, got {type(encoded).__name__}")
    data = base64.b64decode(encoded)
    decoded = list(struct.unpack(f"<{len(data) // 4}f", data))
    return {
        "openai_version": openai.__version__,
        "default": vectors(default),
        "default_model": default.model,
        "default_usage": {
            "prompt_tokens": default.usage.prompt_tokens,
            "total_tokens": default.usage.total_tokens,
        },
        "float": vectors(as_float),
        "base64_decoded": decoded,
        "request_id": raw.request_id,
        "object": default.object,
    }


MODES = {"tools": tools_main, "parse": parse_main, "embeddings": embeddings_main}


def main(argv):
    if len(argv) not in (4, 5) or (len(argv) == 5 and argv[4] not in MODES):
        print(__doc__, file=sys.stderr)
        return 2
    base_url, api_key, alias = argv[1], argv[2], argv[3]
    c = client(base_url, api_key)
    if len(argv) == 5:
        print(json.dumps(MODES[argv[4]](c, alias)))
        return 0

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
            "usage": usage_dict(usage),
            "request_id_header": raw.headers.get("x-tollgate-request-id"),
        },
        # The same request streamed, with the usage chunk asked for, then without it.
        "stream": consume_stream(
            c.chat.completions.create(
                model=alias,
                messages=MESSAGES,
                max_tokens=MAX_TOKENS,
                stream=True,
                stream_options={"include_usage": True},
            )
        ),
        "stream_without_usage": consume_stream(
            c.chat.completions.create(
                model=alias, messages=MESSAGES, max_tokens=MAX_TOKENS, stream=True
            )
        ),
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
