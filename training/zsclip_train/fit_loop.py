"""The training loop behind `fit_model`: build, resume, step, log, evaluate, checkpoint, save."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple, cast

import torch
from torch.nn.parallel import DistributedDataParallel
from zsclip.errors import InputDataError

from zsclip_train.data_pairs import Collate, GlobalBatchSampler, ImagePreprocess, PairDataset, QueryTokenizer
from zsclip_train.ddp import DistContext, all_reduce_mean, barrier, gather_features, gather_features_with_grad
from zsclip_train.feature_cache import CachedFeatureForward, CachedPairDataset, open_feature_cache
from zsclip_train.fit import FitResult, TrainConfig, autocast_context, lr_factor, train_summary
from zsclip_train.fit_checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint, set_rng_state
from zsclip_train.fit_eval import evaluate_zero_shot
from zsclip_train.fit_log import MetricLog
from zsclip_train.fit_model import TwoTower, save_pretrained
from zsclip_train.loss import contrastive_loss, local_contrastive_loss

logger = logging.getLogger(__name__)
TRAIN_FIELDS = ("step", "epoch", "loss", "lr", "logit_scale", "samples_per_s")


@dataclass
class Run:
    """Everything a training run holds (mutable: it is the loop's state)."""

    cfg: TrainConfig
    ctx: DistContext
    model: TwoTower
    wrapped: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    tokenizer: QueryTokenizer
    tokenizer_file: Optional[Path]  # the prepared WordPiece tokenizer; None with an hf: text tower
    step: int = 0
    micro_steps_per_epoch: int = 1


def query_tokenizer(cfg: TrainConfig) -> Tuple[QueryTokenizer, Optional[Path], int]:
    """The tokenizer training uses: the hf: text tower's own, else the prepared WordPiece one.
    Returns (tokenizer, its file or None, vocabulary size)."""
    reference = cfg.model.hf_text
    if reference is not None:
        from zsclip_train.hf_towers import fast_tokenizer

        hf_tokenizer = fast_tokenizer(reference)
        return QueryTokenizer.from_transformers(hf_tokenizer, cfg.model.context_length), None, len(hf_tokenizer)
    tokenizer_file = cfg.tokenizer or cfg.data / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise InputDataError(f"tokenizer {tokenizer_file} not found; run `zsclip-train prepare` or set `tokenizer`")
    tokenizer = QueryTokenizer.from_file(tokenizer_file, cfg.model.context_length)
    return tokenizer, tokenizer_file, tokenizer.tokenizer().get_vocab_size()


def build_run(cfg: TrainConfig, ctx: DistContext) -> Run:
    tokenizer, tokenizer_file, vocab_size = query_tokenizer(cfg)
    model_cfg = dataclasses.replace(cfg.model, vocab_size=vocab_size,
                                    init_bias=-10.0 if cfg.loss == "siglip" else cfg.model.init_bias)
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    model = TwoTower(model_cfg).to(ctx.device)
    model.logit_bias.requires_grad_(cfg.loss == "siglip")  # DDP needs a gradient for every trainable parameter
    trainable = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in trainable if p.ndim >= 2]
    no_decay = [p for p in trainable if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.98))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, cfg))
    net = CachedFeatureForward(model) if cfg.feature_cache is not None else model
    wrapped = DistributedDataParallel(net, device_ids=[ctx.device] if ctx.device.type == "cuda" else None) \
        if ctx.distributed else net
    return Run(cfg, ctx, model, wrapped, optimizer, scheduler, tokenizer, tokenizer_file)


def pair_dataset(cfg: TrainConfig, model: TwoTower) -> PairDataset:
    """The training pairs, preprocessed for `model`'s image tower (`cache-features` uses the same)."""
    return PairDataset(cfg.data, ImagePreprocess.of_model(model), cfg.seed)


def make_batches(run: Run, stop: int) -> Iterator:
    cfg, ctx = run.cfg, run.ctx
    dataset = pair_dataset(cfg, run.model)
    if cfg.feature_cache is not None:  # pooled features of the locked image tower instead of decoded images
        dataset = CachedPairDataset(dataset, open_feature_cache(cfg.feature_cache, run.model, dataset, cfg.data,
                                                                ctx.device))
    sampler = GlobalBatchSampler(len(dataset), cfg.batch_size, ctx.rank, ctx.world_size, cfg.seed,
                                 run.step * cfg.accum_steps, stop * cfg.accum_steps)
    run.micro_steps_per_epoch = sampler.per_epoch
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, num_workers=cfg.num_workers, pin_memory=ctx.device.type == "cuda",
        collate_fn=Collate(run.tokenizer),
        generator=torch.Generator().manual_seed(cfg.seed),  # never draw from the global RNG (exact resume)
    )
    return iter(loader)


def train_step(run: Run, batches: Iterator) -> float:
    """One optimizer step over `accum_steps` micro-batches; returns the mean loss."""
    cfg, total = run.cfg, 0.0
    run.optimizer.zero_grad(set_to_none=True)
    for micro in range(cfg.accum_steps):
        pixels, ids, mask = (t.to(run.ctx.device, non_blocking=True) for t in next(batches))
        last = micro == cfg.accum_steps - 1
        no_sync = cast(DistributedDataParallel, run.wrapped).no_sync() if run.ctx.distributed and not last \
            else contextlib.nullcontext()
        with no_sync:
            with autocast_context(cfg, run.ctx.device):
                image, text = run.wrapped(pixels, ids, mask)
            loss = batch_loss(run, image, text)
            (loss / cfg.accum_steps).backward()
        total += loss.item() / cfg.accum_steps
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_([p for p in run.model.parameters() if p.requires_grad], cfg.grad_clip)
    run.optimizer.step()
    run.scheduler.step()
    run.step += 1
    return total


def batch_loss(run: Run, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """The micro-batch loss whose gradient, averaged by DDP, is the exact gradient of the global-batch loss."""
    ctx, model = run.ctx, run.model
    if run.cfg.local_loss:
        # this rank's share of the global loss; the gather's backward routes every rank's row gradients home
        return local_contrastive_loss(run.cfg.loss, image, text, gather_features_with_grad(image, ctx),
                                      gather_features_with_grad(text, ctx), ctx.rank * len(image), model.scale(),
                                      model.logit_bias)
    # every rank holds the same global loss but back-propagates into its own rows only (see gather_features)
    return contrastive_loss(run.cfg.loss, gather_features(image, ctx), gather_features(text, ctx), model.scale(),
                            model.logit_bias)


def evaluate(run: Run, log: Optional[MetricLog]) -> Dict[str, float]:
    """Rank 0 evaluates while the others wait."""
    scores: Dict[str, float] = {}
    if run.cfg.eval_dir is not None and run.ctx.is_main:
        scores = evaluate_zero_shot(run.model, run.tokenizer, run.cfg.eval_dir, run.cfg.eval_gt,
                                    run.cfg.eval_prompts, run.ctx.device)
        logger.info("step %d zero-shot top-1: %s", run.step, scores)
        if log is not None:
            for name, top1 in scores.items():
                log.write({"step": run.step, "dataset": name, "top1": round(top1, 4)})
    barrier(run.ctx)
    return scores


def run_training(cfg: TrainConfig, ctx: DistContext) -> FitResult:
    started = time.time()
    run = build_run(cfg, ctx)
    checkpoint = latest_checkpoint(cfg.out_dir) if cfg.resume else None
    rng = None
    if checkpoint is not None:
        restored = load_checkpoint(checkpoint, run.model, run.optimizer, run.scheduler, ctx)
        run.step, rng = restored["step"], restored["rng"]
        logger.info("resuming from %s (step %d)", checkpoint, run.step)
    stop = min(cfg.steps, cfg.stop_at_step or cfg.steps)
    batches = make_batches(run, stop)
    if rng is not None:
        set_rng_state(rng)
    else:
        torch.manual_seed(cfg.seed + 1 + ctx.rank)  # per-rank dropout stream
    train_log = MetricLog(cfg.out_dir, "metrics", TRAIN_FIELDS, run.step) if ctx.is_main else None
    eval_log = MetricLog(cfg.out_dir, "eval", ("step", "dataset", "top1"), run.step, tensorboard=False) \
        if ctx.is_main and cfg.eval_dir else None
    loss, scores, tick, samples = float("nan"), {}, time.time(), 0
    run.model.train()
    while run.step < stop:
        loss = train_step(run, batches)
        samples += cfg.batch_size * cfg.accum_steps * ctx.world_size
        if run.step % cfg.log_every == 0 or run.step == stop:
            loss = all_reduce_mean(loss, ctx)
            if train_log is not None:
                rate, tick, samples = samples / max(1e-9, time.time() - tick), time.time(), 0
                train_log.write({"step": run.step, "epoch": run.step * cfg.accum_steps // run.micro_steps_per_epoch,
                                 "loss": round(loss, 6), "lr": run.scheduler.get_last_lr()[0],
                                 "logit_scale": round(run.model.scale().item(), 4), "samples_per_s": round(rate, 1)})
        if cfg.eval_every and run.step % cfg.eval_every == 0 and run.step < cfg.steps:
            evaluate(run, eval_log)
        if run.step % cfg.checkpoint_every == 0 or run.step == stop:
            save_checkpoint(cfg.out_dir, run.step, run.step * cfg.accum_steps, run.model, run.optimizer,
                            run.scheduler, ctx, cfg.keep_checkpoints)
    final = None
    if run.step == cfg.steps:
        scores = evaluate(run, eval_log)
        final = cfg.out_dir / "final"
        if ctx.is_main:
            save_pretrained(run.model, final, run.tokenizer_file,
                            {"train": train_summary(cfg, run.step, started), "zero_shot": scores})
        barrier(ctx)
    for log in (train_log, eval_log):
        if log is not None:
            log.close()
    return FitResult(run.step, loss, final, scores)

