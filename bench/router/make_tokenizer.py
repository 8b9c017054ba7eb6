"""Writes a small Hugging Face tokenizer directory that loads offline: a word-level vocabulary.

    <venv with `tokenizers`>/bin/python bench/router/make_tokenizer.py DIR

LLM benchmark clients count tokens and synthesize prompts with a Hugging Face tokenizer, which they
normally download from a model hub. This one needs no network: `tokenizer.json` (a WordLevel model
over pseudo-words of two to six letters, split on whitespace) plus `tokenizer_config.json`, which
`transformers.AutoTokenizer.from_pretrained(DIR)` reads as a `PreTrainedTokenizerFast`. Each word
is one token here and, being at most six letters, one token in the simulator too, so the two counts
agree on prompts the clients generate.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers

SPECIAL = ["<unk>", "<s>", "</s>", "<pad>"]


def build(directory: Path, size: int = 8000, seed: int = 7) -> None:
    rng = random.Random(seed)
    words: dict[str, int] = {tok: i for i, tok in enumerate(SPECIAL)}
    while len(words) < size:
        words.setdefault("".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 6))), len(words))
    tokenizer = Tokenizer(models.WordLevel(vocab=words, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tokenizer.add_special_tokens(SPECIAL)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(directory / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "unk_token": "<unk>",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "pad_token": "<pad>",
        "model_max_length": 4096,
        "chat_template": (
            "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
        ),
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=1))
    (directory / "special_tokens_map.json").write_text(
        json.dumps({k: config[k] for k in ("unk_token", "bos_token", "eos_token", "pad_token")})
    )


if __name__ == "__main__":
    build(Path(sys.argv[1]))
