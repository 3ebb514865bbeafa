"""`/tokenize`: the encoder's WordPiece pieces with character offsets; `/decode`: ids back to
text (TEI's shapes)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

from fastapi import APIRouter, Response

from semsearch.service.access import note
from semsearch.service.deps import EmbeddingDep
from semsearch.service.engine import check_input_count
from semsearch.service.errors import PayloadTooLarge, input_errors
from semsearch.service.offload import run_sized
from semsearch.service.schemas import NATIVE_ERRORS, DecodeRequest, Token, TokenizeRequest
from semsearch.service.token_inputs import check_token_ids

if TYPE_CHECKING:
    from semsearch.encoder.wordpiece import WordPieceTokenizer

router = APIRouter(tags=["embeddings"], responses=NATIVE_ERRORS)


@router.post("/tokenize", response_model=list[list[Token]])
async def tokenize(body: TokenizeRequest, engine: EmbeddingDep) -> Response:
    texts = body.texts()
    limit = engine.settings.max_input_chars
    check_input_count(len(texts), engine.settings.max_client_batch_size, "inputs")
    chars = engine.check_inputs(texts)
    note(batch_size=len(texts))  # the request's access line
    # Nothing truncates here, so the answer grows with the input: bound the request as a whole.
    if chars > limit:
        raise PayloadTooLarge(
            f"the inputs have {chars} characters together, more than the limit of {limit} "
            "(SEMSEARCH_MAX_INPUT_CHARS); split the request"
        )
    tokenizer = engine.embedder.tokenizer
    # Tokens and their JSON are built off the loop: a long input makes tens of thousands.
    payload = await run_sized(chars, _tokens_json, tokenizer, texts, body.add_special_tokens)
    return Response(payload, media_type="application/json")


@router.post("/decode", response_model=list[str])
async def decode(body: DecodeRequest, engine: EmbeddingDep) -> list[str]:
    sequences = body.sequences()
    limit = engine.settings.max_input_chars
    check_input_count(len(sequences), engine.settings.max_client_batch_size, "ids")
    tokenizer = engine.embedder.tokenizer
    vocab_size = len(tokenizer.id_to_token)
    total = check_token_ids(enumerate(sequences), vocab_size, limit, "sequence")
    # The answer grows with the ids, as /tokenize's with the text: bound the request as a whole.
    if total > limit:
        raise PayloadTooLarge(
            f"the sequences have {total} token ids together, more than the limit of {limit} "
            "(SEMSEARCH_MAX_INPUT_CHARS, an id counting as a character); split the request"
        )
    return await run_sized(total, _decode_all, tokenizer, sequences, body.skip_special_tokens)


def _decode_all(
    tokenizer: WordPieceTokenizer, sequences: list[list[int]], skip_special_tokens: bool
) -> list[str]:
    return [tokenizer.decode(ids, skip_special_tokens) for ids in sequences]


def _tokens_json(
    tokenizer: WordPieceTokenizer, texts: Sequence[str], add_special_tokens: bool
) -> bytes:
    """The answer's JSON (the `Token` shape) for every input."""
    out = []
    for text in texts:
        with input_errors():
            enc = tokenizer.encode(text, add_special_tokens=add_special_tokens)
        tokens: list[dict[str, int | str | bool | None]] = []
        for token_id, (start, stop), added in zip(
            enc.ids, enc.offsets, enc.special_tokens_mask, strict=True
        ):
            if added:  # [CLS]/[SEP] the tokenizer added: no span in the input
                text_of = tokenizer.id_to_token[token_id]
                tokens.append(
                    {"id": token_id, "text": text_of, "special": True, "start": None, "stop": None}
                )
            else:
                tokens.append(
                    {
                        "id": token_id,
                        "text": text[start:stop],
                        "special": False,
                        "start": start,
                        "stop": stop,
                    }
                )
        out.append(tokens)
    return json.dumps(out, ensure_ascii=False).encode()
