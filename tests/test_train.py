"""Trainer internals: validation split, exact resume, atomic checkpoints, NaN, early stopping."""

import json
import math
import os
import shutil
import signal
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import styler.device
from styler.config import DiscriminatorConfig, Features, GeneratorConfig, LossConfig, Precision, StyleLoss, \
    TrainConfig
from styler.errors import ConfigError, DataError, TrainingError
from styler.io.weights import read_info
from styler.training.data import ContentDataset, InfiniteSampler
from styler.training.losses import PerceptualLoss
from styler.training.runs import RunDir
from styler.training.trainer import Trainer
from styler.training.validation import split_validation

CPU = torch.device("cpu")
TINY = TrainConfig(name="t", steps=4, batch_size=2, image_size=32, style_size=64, features=Features.RANDOM,
                   num_workers=0, val_every=1, checkpoint_every=2, preview_every=0,
                   generator=GeneratorConfig(base_channels=4, num_residual=1),
                   discriminator=DiscriminatorConfig(base_channels=8))


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny convolutions run faster on one thread, and much faster on a busy machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_trainer(tmp_path, photo_dir, style_image, config=TINY, **options):
    options.setdefault("run_dir", tmp_path / "run")
    return Trainer(config, style_image, photo_dir, tmp_path / "w", CPU, **options)


def generator_state(trainer):
    return {k: v.clone() for k, v in trainer.generator.state_dict().items()}


@pytest.mark.parametrize("n,fraction,expected", [(1, 0.02, 0), (2, 0.02, 1), (6, 0.02, 3), (9, 0.02, 4),
                                                 (1000, 0.02, 20), (10000, 0.02, 64), (100, 0.0, 0)])
def test_validation_split_sizes(n, fraction, expected):
    paths = [Path(f"{i}.png") for i in range(n)]
    train, val = split_validation(paths, fraction, seed=3)
    assert len(val) == expected and len(train) == n - expected and not set(train) & set(val)
    assert split_validation(paths, fraction, seed=3) == (train, val)  # fixed by the seed


def test_sampler_shards_ranks_and_starts_mid_stream():
    def take(sampler, k):
        it = iter(sampler)
        return [next(it) for _ in range(k)]

    single = take(InfiniteSampler(5, seed=1, positions=True), 12)
    rank0 = take(InfiniteSampler(5, seed=1, rank=0, world_size=2, positions=True), 6)
    rank1 = take(InfiniteSampler(5, seed=1, rank=1, world_size=2, positions=True), 6)
    assert sorted(rank0 + rank1, key=lambda item: item[1]) == single
    assert take(InfiniteSampler(5, seed=1, start=7, positions=True), 5) == single[7:]


def test_crops_come_from_sample_position_not_global_rng(photo_dir):
    dataset = ContentDataset(sorted(photo_dir.glob("*.png")), 32, seed=5)
    torch.manual_seed(1)
    first = dataset[(2, 11)][0]
    torch.manual_seed(2)
    assert torch.equal(first, dataset[(2, 11)][0])
    assert not torch.equal(first, dataset[(2, 12)][0])


@pytest.mark.parametrize("workers,style_loss,temporal,d_every", [(0, StyleLoss.GRAM, 0.0, 1), (1, StyleLoss.SLICED, 0.0, 1),
                                                                  (0, StyleLoss.GRAM, 10.0, 1), (0, StyleLoss.GRAM, 0.0, 3)])
def test_interrupt_and_resume_is_bit_for_bit(tmp_path, photo_dir, style_image, workers, style_loss, temporal, d_every):
    config = replace(TINY, num_workers=workers, loss=LossConfig(style_loss=style_loss, temporal_weight=temporal),
                     image_size=64 if temporal else TINY.image_size, d_every=d_every)
    straight = make_trainer(tmp_path / "a", photo_dir, style_image, config)
    straight.run()

    def ctrl_c_at_step_2(report):
        if report.step == 2:
            signal.raise_signal(signal.SIGINT)  # deferred to the end of the step

    interrupted = make_trainer(tmp_path / "b", photo_dir, style_image, config)
    with pytest.raises(KeyboardInterrupt):
        interrupted.run(ctrl_c_at_step_2)
    assert RunDir(tmp_path / "b" / "run").load_checkpoint()["step"] == 2
    resumed = make_trainer(tmp_path / "b", photo_dir, style_image, config, resume=True)
    assert resumed.step == 2
    resumed.run()
    a, b = generator_state(straight), generator_state(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert straight.best.loss == resumed.best.loss
    steps = [r["step"] for r in RunDir(tmp_path / "b" / "run").read_metrics()]
    assert steps == [1, 2, 3, 4]  # nothing logged twice across the interruption


def test_grad_scaler_state_survives_resume(tmp_path, photo_dir, style_image, monkeypatch):
    # fp16 loss scaling runs on CUDA; an enabled CPU scaler exercises the same checkpoint path.
    monkeypatch.setattr(Trainer, "_grad_scaler",
                        lambda self: torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=1))
    config = replace(TINY, steps=3, val_every=10)
    trainer = make_trainer(tmp_path, photo_dir, style_image, config)
    with pytest.raises(KeyboardInterrupt):
        trainer.run(lambda report: (_ for _ in ()).throw(KeyboardInterrupt()) if report.step == 2 else None)
    assert RunDir(tmp_path / "run").load_checkpoint()["scaler"]["scale"] == 4096.0
    resumed = make_trainer(tmp_path, photo_dir, style_image, config, resume=True)
    assert resumed.scaler.get_scale() == 4096.0


@pytest.mark.parametrize("precision,dtype", [(Precision.FP32, torch.float32), (Precision.BF16, torch.bfloat16)])
def test_training_runs_in_the_precision_asked_for(tmp_path, photo_dir, style_image, precision, dtype):
    trainer = make_trainer(tmp_path, photo_dir, style_image, replace(TINY, precision=precision))
    seen = []
    trainer.generator.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    losses = trainer.train_step(next(iter(trainer._loader()))[0])
    assert seen == [dtype] and all(torch.isfinite(torch.tensor(v)) for v in losses.values())


@pytest.mark.parametrize("flags,dtype", [({"avx512_bf16": False, "amx_bf16": False}, torch.float32),
                                         ({"avx512_bf16": True, "amx_bf16": False}, torch.bfloat16)])
def test_auto_trains_in_bf16_where_the_cpu_computes_it(monkeypatch, tmp_path, photo_dir, style_image, flags, dtype):
    """AVX512-BF16 alone is enough for training: its step ran 1.5x faster than fp32's there
    (docs/performance.md), while apply keeps fp32 on such a CPU (tests/test_precision.py)."""
    monkeypatch.setattr(styler.device, "cpu_bf16_flags", lambda: flags)
    trainer = make_trainer(tmp_path, photo_dir, style_image, replace(TINY, precision=Precision.AUTO))
    assert trainer.amp_dtype == dtype


def test_discriminator_learns_on_every_d_every_th_step(tmp_path, photo_dir, style_image):
    trainer = make_trainer(tmp_path, photo_dir, style_image, replace(TINY, d_every=2))
    batch = next(iter(trainer._loader()))[0]
    updated, logged = [], []
    for step in range(4):
        before = [p.clone() for p in trainer.discriminator.parameters()]
        trainer.step = step
        logs = trainer.train_step(batch)
        updated.append(any(not torch.equal(a, b) for a, b in zip(before, trainer.discriminator.parameters())))
        logged.append(logs["d"])
        assert "adv" in logs  # the generator's adversarial term comes every step
    assert updated == [True, False, True, False]
    # Every step reports the discriminator's losses at its latest update, so the logged lines
    # (every tenth step, an odd one) and the progress line keep them.
    assert logged[1] == logged[0] and logged[3] == logged[2] and logged[2] != logged[1]
    with pytest.raises(ConfigError, match="d_every must be >= 1, got 0"):
        replace(TINY, d_every=0)


def test_fp16_training_is_refused_on_the_cpu_as_apply_refuses_it(tmp_path, photo_dir, style_image):
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
        make_trainer(tmp_path, photo_dir, style_image, replace(TINY, precision=Precision.FP16))


def test_resume_with_other_settings_lists_fields_unless_forced(tmp_path, photo_dir, style_image):
    trainer = make_trainer(tmp_path, photo_dir, style_image, replace(TINY, steps=2))
    trainer.run()
    changed = replace(TINY, steps=3, lr=2e-3, loss=LossConfig(style_weight=3.0), log_every=5)
    with pytest.raises(ConfigError, match=r"loss\.style_weight: 5\.0 -> 3\.0; lr: 0\.001 -> 0\.002\)"):
        make_trainer(tmp_path, photo_dir, style_image, changed, resume=True)
    assert make_trainer(tmp_path, photo_dir, style_image, changed, resume=True, force=True).step == 2


def test_fresh_start_refuses_to_replace_an_unfinished_run(tmp_path, photo_dir, style_image):
    trainer = make_trainer(tmp_path, photo_dir, style_image)
    with pytest.raises(KeyboardInterrupt):
        trainer.run(lambda report: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(TrainingError, match="unfinished run \\(step 1\\).*--resume.*--force"):
        make_trainer(tmp_path, photo_dir, style_image)
    assert make_trainer(tmp_path, photo_dir, style_image, force=True).step == 0
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_checkpoint_write_is_atomic_and_never_unpickles(tmp_path, monkeypatch):
    run = RunDir(tmp_path / "run")
    run.save_checkpoint({"step": 1, "weights": torch.ones(3)})

    def crash(obj, fh, *args, **kwargs):
        fh.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError):
        run.save_checkpoint({"step": 2})
    monkeypatch.undo()
    assert run.load_checkpoint()["step"] == 1
    assert [p.name for p in run.path.iterdir()] == ["checkpoint.pt"]  # no temp file left behind
    torch.save({"format": "styler-run-checkpoint", "version": 1, "evil": DataError("x")}, run.checkpoint_path)
    with pytest.raises(TrainingError, match="unreadable checkpoint"):
        run.load_checkpoint()


KILLED_MID_WRITE = """
import sys, time, torch
from styler.training.runs import RunDir
run = RunDir(sys.argv[1])
run.save_checkpoint({"step": 1, "weights": torch.full((1000,), 1.0)})

def half_then_hang(obj, fh, *args, **kwargs):
    fh.write(b"half a checkpoint")
    fh.flush()
    open(sys.argv[2], "w").close()  # tells the test that the second write is under way
    time.sleep(600)

torch.save = half_then_hang
run.save_checkpoint({"step": 2, "weights": torch.full((1000,), 2.0)})
"""


def test_kill_9_while_writing_leaves_a_loadable_checkpoint(tmp_path):
    import subprocess
    import sys
    import time

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    started = tmp_path / "writing"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_MID_WRITE, str(tmp_path / "run"), str(started)], env=env)
    try:
        deadline = time.monotonic() + 120
        while not started.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert started.exists(), "the writer never reached its second checkpoint"
    finally:
        proc.kill()  # SIGKILL inside the second write: no cleanup handlers run
        proc.wait()
    partial = [p for p in (tmp_path / "run").iterdir() if p.name != "checkpoint.pt"]
    assert [p.read_bytes() for p in partial] == [b"half a checkpoint"]  # the kill did land mid-write
    state = RunDir(tmp_path / "run").load_checkpoint()
    assert state["step"] == 1 and torch.equal(state["weights"], torch.full((1000,), 1.0))


TWO_RANKS = """
import json, sys, torch
from pathlib import Path
from styler.config import TrainConfig, from_dict
from styler.training import distributed
from styler.training.trainer import Trainer

config, style, photos, out = from_dict(TrainConfig, json.loads(sys.argv[1])), *map(Path, sys.argv[2:])
dist = distributed.from_env()
trainer = Trainer(config, style, photos, out / "w", distributed.setup(dist, torch.device("cpu")),
                  run_dir=out / "run", dist=dist)
batches = iter(trainer._loader())
first = next(batches)[0]
trainer.train_step(first)
trainer.train_step(next(batches)[0])
torch.save({"first": first, "generator": trainer.generator.state_dict()}, out / f"rank{dist.rank}.pt")
distributed.teardown()
"""


def test_two_ranks_average_gradients_and_stay_identical(tmp_path, photo_dir, style_image):
    """Under torchrun each rank trains on its own shard; DDP averages the gradients, so after two
    steps both ranks hold the same generator (bare modules would drift apart on different data)."""
    import subprocess
    import sys

    from styler.config import to_json

    script = tmp_path / "two_ranks.py"
    script.write_text(TWO_RANKS)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
           to_json(replace(TINY, val_fraction=0.0)), str(style_image), str(photo_dir), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert not torch.equal(rank0["first"], rank1["first"])  # different data on the two ranks
    start = Trainer(replace(TINY, val_fraction=0.0), style_image, photo_dir, tmp_path / "w", CPU,
                    run_dir=tmp_path / "single").generator.state_dict()
    assert any(not torch.equal(rank0["generator"][k], start[k]) for k in start)  # they did train
    for name, value in rank0["generator"].items():
        assert torch.equal(rank1["generator"][name], value), name


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, photo_dir, style_image, monkeypatch):
    forward = PerceptualLoss.forward
    calls = []

    def poisoned(self, output, content):
        terms = forward(self, output, content)
        if torch.is_grad_enabled():  # training steps only, not validation
            calls.append(1)
            if len(calls) == 3:
                terms["total"] = terms["total"] * float("nan")
        return terms

    monkeypatch.setattr(PerceptualLoss, "forward", poisoned)
    trainer = make_trainer(tmp_path, photo_dir, style_image)
    with pytest.raises(TrainingError, match="generator loss became nan at step 3.*checkpoint \\(step 2\\)"):
        trainer.run()
    state = RunDir(tmp_path / "run").load_checkpoint()
    assert state["step"] == 2 and all(torch.isfinite(v).all() for v in state["generator"].values())
    assert not (tmp_path / "w" / "t.safetensors").exists()


def test_early_stopping_keeps_the_best_weights(tmp_path, photo_dir, style_image, monkeypatch):
    losses = iter([1.0, 0.5, 0.7, 0.9, 0.2])
    monkeypatch.setattr(Trainer, "validate", lambda self: next(losses))
    trainer = make_trainer(tmp_path, photo_dir, style_image, replace(TINY, steps=5, patience=2))
    best = {}
    trainer.run(lambda report: best.update(generator_state(trainer)) if report.step == 2 else None)
    result_meta = read_info(tmp_path / "w" / "t.safetensors").metadata
    assert trainer.step == 4 and trainer.stopped_early
    assert result_meta["best_step"] == 2 and result_meta["val_loss"] == 0.5 and result_meta["stopped_early"]
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "w" / "t.safetensors"))
    assert all(torch.equal(saved[k], best[k]) for k in best)


def test_init_from_copies_weights_and_rejects_other_architectures(tmp_path, photo_dir, style_image):
    make_trainer(tmp_path, photo_dir, style_image, replace(TINY, steps=1)).run()
    source = tmp_path / "w" / "t.safetensors"
    config = replace(TINY, name="u", init_from="t")
    trainer = make_trainer(tmp_path, photo_dir, style_image, config, run_dir=tmp_path / "run2")
    from safetensors.torch import load_file

    saved = load_file(str(source))
    assert all(torch.equal(saved[k], v) for k, v in trainer.generator.state_dict().items())
    with pytest.raises(ConfigError, match="its generator is"):
        make_trainer(tmp_path, photo_dir, style_image,
                     replace(config, generator=GeneratorConfig(base_channels=8, num_residual=1)),
                     run_dir=tmp_path / "run3")


def test_compile_trains_compiled_networks_that_give_the_same_outputs(tmp_path, photo_dir, style_image,
                                                                    monkeypatch):
    dynamo = pytest.importorskip("torch._dynamo")
    if not dynamo.is_dynamo_supported():
        pytest.skip("torch.compile is not supported on this Python/platform")
    real_compile = torch.compile
    compiled = []
    # The real compiler (graph capture and AOT autograd) with eager kernels: no C++ toolchain
    # needed and seconds instead of minutes on a small CPU; what is tested is that styler uses it.
    monkeypatch.setattr(torch, "compile", lambda module, **kw: compiled.append(module) or real_compile(
        module, backend="aot_eager", **kw))
    trainer = make_trainer(tmp_path, photo_dir, style_image, replace(TINY, compile=True))
    assert compiled == [trainer.generator, trainer.extractor]
    assert trainer.g_model._orig_mod is trainer.generator and trainer.loss.extractor._orig_mod is trainer.extractor
    dynamo.reset()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(trainer.g_model(x), trainer.generator(x))
        plain = trainer.extractor(x)
        for name, value in trainer.loss.extractor(x).items():
            # Eager runs the wide layers as Winograd convolutions, compiled as direct ones: the
            # same arithmetic up to fp32 rounding.
            torch.testing.assert_close(value, plain[name], rtol=1e-4, atol=1e-4)
    assert dynamo.utils.counters["stats"]["unique_graphs"] >= 2  # both were captured and compiled
    assert all(torch.isfinite(torch.tensor(v)) for v in trainer.train_step(x).values())


@pytest.mark.compile
def test_compiled_training_steps_with_inductor_on_the_cpu(tmp_path, photo_dir, style_image):
    """The real compiler, C++ kernels included: with its default layout optimisation the
    generator's first backward pass failed (the replication pad's backward)."""
    dynamo = pytest.importorskip("torch._dynamo")
    if not dynamo.is_dynamo_supported() or shutil.which("g++") is None:
        pytest.skip("torch.compile needs a supported Python and a C++ compiler here")
    dynamo.reset()
    trainer = make_trainer(tmp_path, photo_dir, style_image, replace(TINY, compile=True))
    x = torch.rand(2, 3, 32, 32)
    losses = trainer.train_step(x)
    assert all(math.isfinite(v) for v in losses.values())
    with torch.no_grad():
        torch.testing.assert_close(trainer.g_model(x), trainer.generator(x), rtol=1e-4, atol=1e-4)
    dynamo.reset()


def test_only_unreadable_content_is_one_clear_error(tmp_path, style_image):
    for name in ("a.jpg", "b.png"):
        (tmp_path / "bad" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "bad" / name).write_bytes(b"junk")
    with pytest.raises(DataError, match="none of the 2 content images could be read"):
        Trainer(replace(TINY, val_fraction=0.0), style_image, tmp_path / "bad", tmp_path / "w", CPU,
                run_dir=tmp_path / "run")


def test_run_json_describes_the_run(tmp_path, photo_dir, style_image):
    make_trainer(tmp_path, photo_dir, style_image)
    spec = RunDir(tmp_path / "run").read_spec()
    assert spec.config == TINY and spec.style == style_image.resolve() and os.path.isabs(spec.content_dir)
    assert json.loads((tmp_path / "run" / "run.json").read_text())["config"]["image_size"] == 32
