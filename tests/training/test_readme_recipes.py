"""training/README.md's TOML blocks and torchrun lines are what the code accepts (so the recipes cannot rot):
every TOML (```toml blocks, named by their first-line comment, and the `cat > NAME <<'TAG'` heredocs of the demos)
parses into a TrainConfig; those with hf: towers, their hub ids replaced by tiny local save_pretrained folders,
build the model with the locking they ask for; every torchrun line parses with torchrun's own argument parser
and fits a TOML the README names."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from zsclip_train.fit import TrainConfig  # noqa: E402

README = Path(__file__).resolve().parents[2] / "training" / "README.md"


def readme_tomls() -> dict:
    import tomllib

    text = README.read_text(encoding="utf-8")
    found, fragments = {}, []
    for block in re.findall(r"```toml\n(.*?)```", text, re.S):
        name = re.match(r"# (\S+\.toml)\n", block)
        if name:
            found[name.group(1)] = tomllib.loads(block)
        else:  # a fragment ("add to the fit config"): checked inside the README's first full config
            fragments.append(tomllib.loads(block))
    for i, fragment in enumerate(fragments):
        found[f"run.toml+fragment{i}"] = {**next(iter(found.values())), **fragment}
    for name, _tag, body in re.findall(r"cat > (\S+\.toml) <<'(\w+)'\n(.*?)\n\2\n", text, re.S):
        found[name] = tomllib.loads(body)
    return found


def readme_command_lines() -> list:
    """The lines of the README's plain ``` code blocks, backslash continuations joined."""
    blocks, current = [], None
    for line in README.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            if current is None:
                current = [] if line == "```" else ["<not plain>"]
            else:
                blocks.append(current)
                current = None
        elif current is not None:
            current.append(line)
    lines = []
    for block in blocks:
        if block[:1] != ["<not plain>"]:
            lines += [line.strip() for line in "\n".join(block).replace("\\\n", " ").splitlines() if line.strip()]
    return lines


def test_readme_has_the_recipes():
    assert {"run.toml", "lit.toml", "continue.toml", "demo.toml", "demo-hf.toml"} <= set(readme_tomls())


@pytest.mark.parametrize("name", sorted(readme_tomls()))
def test_readme_toml_parses(name, tmp_path):
    cfg = TrainConfig.from_dict(readme_tomls()[name], base=tmp_path)
    assert cfg.data == tmp_path / "prepared"


def test_readme_torchrun_lines_parse():
    from torch.distributed.run import get_args_parser
    from zsclip_train.cli import main

    tomls = readme_tomls()
    lines = [line for line in readme_command_lines() if re.match(r"(\w+=\S+ )*torchrun ", line)]
    assert len(lines) >= 4, lines
    for line in lines:
        words = shlex.split(line, comments=True)
        words = words[words.index("torchrun") + 1:]
        words = ["1" if w == "R" else w for w in words]  # the placeholder node rank
        try:
            args = get_args_parser().parse_args(words)
        except SystemExit:
            pytest.fail(f"torchrun rejects: {line}")
        assert args.module and args.training_script == "zsclip_train.cli", line
        assert args.training_script_args[0] in main.commands and args.training_script_args[1] in tomls, line


def test_readme_export_lines_name_a_run_final():
    tomls = readme_tomls()
    out_dirs = {cfg["out_dir"] for cfg in tomls.values()}
    lines = [line for line in readme_command_lines() if line.startswith("zsclip-export ")]
    assert lines
    for line in lines:
        source = shlex.split(line)[shlex.split(line).index("--source") + 1]
        assert source.endswith("/final") and source[: -len("/final")] in out_dirs, line


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    pytest.importorskip("transformers")
    from zsclip_train.tiny_towers import write_clip, write_text, write_vision

    root = tmp_path_factory.mktemp("tiny")
    return {"vision": write_vision(root / "vision"), "text": write_text(root / "text"),
            "clip": write_clip(root / "clip"), "root": root}


def local_model_table(model: dict, tiny: dict) -> dict:
    """The [model] table with every hf: reference replaced by a tiny local folder of the same kind (a whole CLIP
    for init and for an image tower taken out of a whole CLIP checkpoint)."""
    from zsclip_train.tiny_towers import write_clip

    model = dict(model)
    for key in ("image_tower", "text_tower", "init"):
        reference = model.get(key, "")
        if not reference.startswith("hf:"):
            continue
        if key == "init":  # a whole CLIPModel projecting to the recipe's embed_dim, with enough text blocks
            folder = tiny["root"] / f"clip-{model['embed_dim']}"
            if not folder.exists():
                write_clip(folder, projection_dim=model["embed_dim"], text_layers=max(2, model.get("text_unlocked_layers", 0)))
        elif key == "image_tower":
            folder = tiny["clip"] if "clip-vit" in reference else tiny["vision"]
        else:
            folder = tiny["text"]
        model[key] = f"hf:{folder}"
    return model


@pytest.mark.parametrize("name", sorted(n for n, cfg in readme_tomls().items()
                                        if any(str(v).startswith("hf:") for v in cfg.get("model", {}).values())))
def test_readme_hf_recipe_builds_with_tiny_towers(name, tiny, tmp_path):
    from zsclip_train.fit_model import TwoTower
    from zsclip_train.hf_towers import fast_tokenizer

    torch.set_num_threads(1)
    raw = readme_tomls()[name]
    cfg = TrainConfig.from_dict({**raw, "model": local_model_table(raw["model"], tiny)}, base=tmp_path)
    assert cfg.model.hf_image and cfg.model.hf_text
    assert len(fast_tokenizer(cfg.model.hf_text)) > 50
    model = TwoTower(cfg.model)
    image_trainable = any(p.requires_grad for p in model.image_tower.parameters())
    text_trainable = [n for n, p in model.text_tower.module.named_parameters() if p.requires_grad]
    assert image_trainable == (not cfg.model.lock_image or cfg.model.image_unlocked_layers > 0), name
    assert bool(text_trainable) == (not cfg.model.lock_text or cfg.model.text_unlocked_layers > 0), name
    if cfg.model.lock_text and cfg.model.text_unlocked_layers:  # (b): the embeddings stay frozen
        assert not any("embeddings" in n for n in text_trainable), text_trainable
