#!/usr/bin/env python3
"""Drives Tollgate's OpenAI-compatible surface with LangChain's `ChatOpenAI`.

Usage: langchain_client.py <base_url> <tenant_key> <alias> <tools_alias> <json_alias>

`base_url` is the gateway's `/v1` base. Prints one JSON summary on stdout: `invoke` on
`alias`, `stream` on `alias` with `stream_usage=True` (chunks added up as LangChain users
do), `bind_tools` + `invoke` on `tools_alias`, and `with_structured_output` (a pydantic
model, LangChain's default method: `response_format` of type `json_schema`) on
`json_alias`. Any unexpected exception is printed on stderr and the exit status is
non-zero. The caller (tests/it/client_matrix.rs) asserts on the summary.
"""

import json
import sys
import traceback

import langchain_core
from importlib.metadata import version
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field

MESSAGES = [
    ("system", "You are a terse assistant."),
    ("human", "What is 1 + 1?"),
    ("ai", "2."),
    ("human", "And 2 + 2?"),
]


class Weather(BaseModel):
    """The weather in a city."""

    city: str = Field(description="The city's name.")
    temperature_c: float = Field(description="The temperature in degrees Celsius.")


def get_weather(city: str) -> str:
    """Current weather in a city."""
    raise AssertionError("LangChain must not call the tool itself")


def get_time(timezone: str) -> str:
    """Current time in an IANA time zone."""
    raise AssertionError("LangChain must not call the tool itself")


def model(base_url, api_key, alias, **kwargs):
    # No retries: an error must show up once, at once; the timeout bounds a hang.
    return ChatOpenAI(
        base_url=base_url,
        api_key=api_key,
        model=alias,
        max_retries=0,
        timeout=20.0,
        max_tokens=64,
        **kwargs,
    )


def usage(message):
    u = message.usage_metadata
    if u is None:
        return None
    return {
        "input_tokens": u["input_tokens"],
        "output_tokens": u["output_tokens"],
        "total_tokens": u["total_tokens"],
    }


def main():
    base_url, api_key, alias, tools_alias, json_alias = sys.argv[1:6]
    summary = {
        "langchain_openai_version": version("langchain-openai"),
        "langchain_core_version": langchain_core.__version__,
        "openai_version": version("openai"),
    }

    answer = model(base_url, api_key, alias).invoke(MESSAGES)
    assert isinstance(answer, AIMessage), type(answer)
    summary["invoke"] = {
        "content": answer.content,
        "usage": usage(answer),
        "finish_reason": answer.response_metadata.get("finish_reason"),
        "model_name": answer.response_metadata.get("model_name"),
        "id": answer.id,
    }

    total = None
    pieces = 0
    for chunk in model(base_url, api_key, alias, stream_usage=True).stream(MESSAGES):
        assert isinstance(chunk, AIMessageChunk), type(chunk)
        if chunk.content:
            pieces += 1
        total = chunk if total is None else total + chunk
    summary["stream"] = {
        "content": total.content,
        "pieces": pieces,
        "usage": usage(total),
        "finish_reason": total.response_metadata.get("finish_reason"),
    }

    with_tools = model(base_url, api_key, tools_alias).bind_tools([get_weather, get_time])
    answer = with_tools.invoke("What are the weather and the time in Paris?")
    summary["tools"] = {
        "content": answer.content,
        "tool_calls": [
            {"id": c["id"], "name": c["name"], "args": c["args"]} for c in answer.tool_calls
        ],
        "invalid_tool_calls": len(answer.invalid_tool_calls),
        "usage": usage(answer),
        "finish_reason": answer.response_metadata.get("finish_reason"),
    }

    structured = model(base_url, api_key, json_alias).with_structured_output(
        Weather, include_raw=True
    )
    result = structured.invoke("What is the weather in Paris?")
    parsed = result["parsed"]
    summary["structured"] = {
        "parsed": parsed.model_dump() if isinstance(parsed, Weather) else repr(parsed),
        "parsing_error": repr(result["parsing_error"]) if result["parsing_error"] else None,
        "usage": usage(result["raw"]),
    }

    print(json.dumps(summary))


if __name__ == "__main__":
    try:
        main()
    except Exception:
        traceback.print_exc()
        sys.exit(1)
