# SPDX-License-Identifier: Apache-2.0
"""A tiny randomly initialised causal LM and a character tokenizer, both built locally (nothing is
downloaded): used by the TRL example and tests/python/test_trl.py."""
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

CHARS = list("0123456789+-*=?.,:; abcdefghijklmnopqrstuvwxyzWAT<>/\n{}\\()")


def make_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2}
    for c in CHARS:
        vocab.setdefault(c, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")  # one char, one token
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>",
                                  unk_token="<unk>")


def make_model(tokenizer, seed: int = 0) -> Qwen2ForCausalLM:
    import torch

    torch.manual_seed(seed)
    cfg = Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id,
                      eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.eos_token_id,
                      tie_word_embeddings=True)
    return Qwen2ForCausalLM(cfg)


def arithmetic_dataset(n: int = 32, seed: int = 0):
    import random

    from datasets import Dataset

    rng = random.Random(seed)
    rows = {"prompt": [], "solution": []}
    for _ in range(n):
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        rows["prompt"].append(f"what is {a}+{b}? answer: ")
        rows["solution"].append(str(a + b))
    return Dataset.from_dict(rows)
