"""Chat with align-serve through the OpenAI SDK: `python clients/examples/chat.py`."""

from __future__ import annotations

import argparse

from openai import OpenAI


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("question", nargs="?", default="What is the capital of France?")
    parser.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--api-key", default="unused")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--strategy", default="vanilla")
    parser.add_argument("--stream", action="store_true")
    args = parser.parse_args()

    client = OpenAI(base_url=args.base_url, api_key=args.api_key)
    request = dict(model=args.model, messages=[{"role": "user", "content": args.question}],
                   max_tokens=128, extra_body={"alignment": {"strategy": args.strategy}})
    if args.stream:
        for chunk in client.chat.completions.create(**request, stream=True):
            if chunk.choices:
                print(chunk.choices[0].delta.content or "", end="", flush=True)
        print()
        return
    reply = client.chat.completions.create(**request)
    print(reply.choices[0].message.content)
    print("alignment:", reply.model_extra.get("alignment"))


if __name__ == "__main__":
    main()
