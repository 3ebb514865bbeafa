"""`/tokenize`: the encoder's WordPiece pieces with character offsets (TEI's shape)."""

from __future__ import annotations

from fastapi import APIRouter

from service.deps import EmbeddingDep
from service.engine import check_input_count
from service.schemas import Token, TokenizeRequest

router = APIRouter(tags=["embeddings"])


@router.post("/tokenize", response_model=list[list[Token]])
async def tokenize(body: TokenizeRequest, engine: EmbeddingDep) -> list[list[Token]]:
    texts = body.texts()
    check_input_count(len(texts), engine.settings.max_client_batch_size, "inputs")
    tokenizer = engine.embedder.tokenizer
    out = []
    for text in texts:
        enc = tokenizer.encode(text, add_special_tokens=body.add_special_tokens)
        tokens = []
        for token_id, (start, stop), added in zip(
            enc.ids, enc.offsets, enc.special_tokens_mask, strict=True
        ):
            if added:  # [CLS]/[SEP] the tokenizer added: no span in the input
                tokens.append(
                    Token(id=token_id, text=tokenizer.id_to_token[token_id], special=True)
                )
            else:
                tokens.append(
                    Token(id=token_id, text=text[start:stop], special=False, start=start, stop=stop)
                )
        out.append(tokens)
    return out
