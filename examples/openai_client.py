"""The OpenAI Python client against a running semsearch server: embeddings, then a chat answer.

    pip install openai
    python examples/openai_client.py [--base-url http://127.0.0.1:8000/v1]

Any model name is accepted; the key matters only when the server sets SEMSEARCH_API_KEY.
"""

from __future__ import annotations

import argparse
import os

from openai import OpenAI


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    args = parser.parse_args()
    client = OpenAI(base_url=args.base_url, api_key=os.environ.get("SEMSEARCH_API_KEY", "unused"))

    texts = ["what is vector search?", "FAISS searches dense vectors."]
    result = client.embeddings.create(model="all-MiniLM-L6-v2", input=texts)
    for text, item in zip(texts, result.data, strict=True):
        print(f"{len(item.embedding)} dimensions: {text}")
    print(f"usage: {result.usage.prompt_tokens} tokens")

    chat = client.chat.completions.create(
        model="SmolLM2-135M-Instruct",
        messages=[{"role": "user", "content": "Say hello in French."}],
        max_tokens=20,
    )
    print(chat.choices[0].message.content)


if __name__ == "__main__":
    main()
