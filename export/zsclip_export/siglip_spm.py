"""SigLIP's SentencePiece-only `SiglipTokenizer` -> a `tokenizers` tokenizer.

`SiglipTokenizer` canonicalises text before SentencePiece (big_vision's prompt engineering): lowercase
(`do_lower_case`), ASCII punctuation removed, whitespace runs collapsed, stripped; then it encodes with
the SentencePiece model (its normaliser + a word-start U+2581) and appends </s>. This module rebuilds that
on top of transformers' own SentencePiece converter. Exactness is not assumed: the exporter compares the
result with `SiglipTokenizer` on its Russian sentence list and refuses the export on any difference.
"""

from __future__ import annotations

import re
import string
from typing import Any, List

from zsclip.errors import ConfigError


def convert_siglip_tokenizer(hf_tokenizer: Any) -> Any:
    """A `tokenizers.Tokenizer` equivalent to `hf_tokenizer` (a transformers SiglipTokenizer).

    Raises:
        ConfigError: protobuf/sentencepiece missing, or not a Unigram SentencePiece model.
    """
    from tokenizers import Regex, normalizers, pre_tokenizers, processors

    try:
        from transformers.convert_slow_tokenizer import SpmConverter

        converted = SpmConverter(hf_tokenizer).converted()
    except (ImportError, OSError, AttributeError) as exc:
        raise ConfigError(f"cannot convert {type(hf_tokenizer).__name__} (needs protobuf and sentencepiece): {exc}") from None
    except Exception as exc:  # the converter raises a bare Exception for non-Unigram models
        raise ConfigError(f"cannot convert {type(hf_tokenizer).__name__}: {exc}") from None
    steps: List[Any] = [normalizers.Lowercase()] if getattr(hf_tokenizer, "do_lower_case", True) else []
    steps += [
        normalizers.Replace(Regex("[" + re.escape(string.punctuation) + "]"), ""),
        normalizers.Replace(Regex(r"\s+"), " "),
        normalizers.Strip(),
    ]
    if converted.normalizer is not None:
        steps.append(converted.normalizer)
    converted.normalizer = normalizers.Sequence(steps)
    converted.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    eos = str(hf_tokenizer.eos_token)
    converted.post_processor = processors.TemplateProcessing(
        single=f"$A {eos}", special_tokens=[(eos, int(hf_tokenizer.eos_token_id))])
    return converted
