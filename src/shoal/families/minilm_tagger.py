"""`minilm-tagger` and `minilm-tagger-int8`: all-MiniLM-L6-v2 fine-tuned for token classification
(`runtime/token_tune.py`): the words of shoal's entity tokenizer (`runtime.tokens`, the one the server documents)
cut into WordPiece sub-tokens, each word's BIO tag read at its first sub-token, a case embedding beside the uncased
encoder's output, early stopping on a held-out share of the training sentences. The body is exported to ONNX (fp32,
or dynamically quantized to int8 per channel): loading and predicting use ONNX Runtime + `tokenizers` only, never
torch. The artifact is `encoder.onnx`, `tokenizer.json` and `tagger.json` (the tags and how the tuning went); an
entity's score is the mean probability of its words' tags.

Tuned bodies are cached like `minilm-finetune`'s (`tuned_family.cached_tuning`): the int8 variant quantizes the fp32
variant's tuning of the same rows, params and seed instead of tuning its own.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from shoal.families import register
from shoal.families.base import Family, Params, read_json, write_json
from shoal.families.entity_tagger import EntityPredictor, entity_output, tagged
from shoal.families.runtime.minilm_source import TOKENIZER_FILE, source_dir
from shoal.families.runtime.tokens import Entities, Found, spans_of, tokenize

#: part of a tuning's cache key: raise it when the tuning's code or settings change, so no stale tuning is reused
TUNING_CODE = 1
ENCODER_FILE = "encoder.onnx"
CONFIG_FILE = "tagger.json"
#: sub-tokens per text when serving (the encoder's limit; words beyond it are tagged O)
MAX_TOKENS = 256
#: texts per encoder run (sorted by length, so padding stays small)
CHUNK = 8


class OnnxTagger(EntityPredictor):
    """The exported tagger in ONNX Runtime. A freshly fit one keeps its encoder in a scratch folder, deleted with it."""

    def __init__(
        self,
        model_path: Path,
        tokenizer_path: Path,
        tags: list[str],
        training: dict[str, Any],
        scratch: tempfile.TemporaryDirectory[str] | None = None,
    ) -> None:
        from shoal.families.runtime.hf_tokenizer import load_tokenizer
        from shoal.families.runtime.onnx_encoder import _cores, _session

        self.model_path, self.tokenizer_path, self.tags, self.training = model_path, tokenizer_path, tags, training
        self._scratch = scratch
        self.tokenizer = load_tokenizer(tokenizer_path, MAX_TOKENS)
        self.pad_id = self.tokenizer.token_to_id("[PAD]")
        self.session = _session(model_path, _cores())

    def predict_proba(self, inputs: Sequence[Any]) -> np.ndarray:
        from shoal.families.runtime.word_pieces import batch, pieces, word_tags

        tokens = [tokenize(text) for text in inputs]
        encoded = pieces(self.tokenizer, [[text[a:b] for a, b in t] for text, t in zip(inputs, tokens, strict=True)])
        found: list[list[Found]] = [[] for _ in inputs]
        order = np.argsort([len(p.ids) for p in encoded], kind="stable")
        for start in range(0, len(order), CHUNK):
            rows = order[start : start + CHUNK]
            logits = self.session.run(None, batch([encoded[i] for i in rows], self.pad_id))[0]
            for k, i in enumerate(rows):
                if tokens[i]:
                    tags, scores = word_tags(logits[k, : len(encoded[i].ids)], encoded[i], self.tags)
                    found[i] = spans_of(tokens[i], tags, scores)
        return entity_output(found)

    def save(self, folder: Path) -> None:
        shutil.copyfile(self.model_path, folder / ENCODER_FILE)
        shutil.copyfile(self.tokenizer_path, folder / TOKENIZER_FILE)
        write_json(folder / CONFIG_FILE, {"tags": self.tags, "training": self.training})

    def n_parameters(self) -> int:
        import onnx  # only to count weights (profiling), never on the prediction path

        model = onnx.load(str(self.model_path), load_external_data=False)
        return int(sum(np.prod(init.dims) for init in model.graph.initializer))

    @classmethod
    def load(cls, folder: Path) -> OnnxTagger:
        config = read_json(folder / CONFIG_FILE)
        return cls(folder / ENCODER_FILE, folder / TOKENIZER_FILE, list(config["tags"]), config["training"])


def tag_names(targets: Sequence[Entities]) -> list[str]:
    """O, then B- and I- of every entity type of the training sentences, in name order."""
    types = sorted({label for target in targets for _, _, label in target.spans})
    return ["O", *(f"{prefix}-{kind}" for kind in types for prefix in "BI")]


@register
class MiniLMTagger(Family):
    name = "minilm-tagger"
    task = "token-classification"
    cost = 500.0
    #: the MiniLM fp32 encoder at batch 1, as `minilm-finetune`'s
    expected_p95_ms = 30.0
    expected_size_mb = 95.0
    #: ~15 s per 1k sentences per epoch on 2 quiet cores, up to 6 epochs, a 3-fold search + final fit ~3 fits
    expected_train_seconds_per_1k_rows = 270.0
    #: the knobs of `token_tune.TaggerSettings`
    defaults: ClassVar[Params] = {"epochs": 6, "time_budget_s": 1800.0}
    int8: ClassVar[bool] = False

    def fit(self, inputs: Sequence[str], targets: Sequence[Entities], params: Params, seed: int) -> OnnxTagger:
        from shoal.families.tuned_family import cached_tuning

        params = {**self.defaults, **params}
        tags = tag_names(targets)

        def build(folder: Path) -> None:
            from shoal.families.runtime import token_tune

            rows = tagged(inputs, targets)
            words = [[text[a:b] for a, b in tokens] for text, tokens, _ in rows]
            settings = token_tune.TaggerSettings.from_params(params)
            model, report = token_tune.tune(
                words, [tokens for _, tokens, _ in rows], [gold for _, _, gold in rows], tags, settings, seed
            )
            token_tune.export(model, folder / ENCODER_FILE)
            write_json(folder / CONFIG_FILE, {"tags": tags, "training": {"params": params, **report.to_dict()}})

        key = [TUNING_CODE, list(inputs), [list(map(list, t.spans)) for t in targets], params, seed]
        cached = cached_tuning(self.quantized_from or self.name, key, build)
        scratch = tempfile.TemporaryDirectory(prefix="shoal-tagger-")
        model_path = Path(scratch.name) / ENCODER_FILE
        if self.int8:
            from shoal.families.runtime.onnx_export import quantize_int8

            quantize_int8(cached / ENCODER_FILE, model_path)
        else:
            shutil.copyfile(cached / ENCODER_FILE, model_path)
        config = read_json(cached / CONFIG_FILE)
        return OnnxTagger(model_path, source_dir() / TOKENIZER_FILE, config["tags"], config["training"], scratch)

    def grid(self, n_rows: int) -> list[Params]:
        return [dict(self.defaults)]

    def load(self, folder: Path) -> OnnxTagger:
        return OnnxTagger.load(folder)


@register
class MiniLMTaggerInt8(MiniLMTagger):
    name = "minilm-tagger-int8"
    cost = 400.0
    expected_size_mb = 25.0
    int8 = True
    quantized_from = "minilm-tagger"
