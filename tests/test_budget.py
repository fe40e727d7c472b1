"""`styler train --budget`: durations, the plan, the budget kept, the steps recorded and reproduced."""

import json
import time
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from styler.errors import ConfigError, TrainingError
from styler.training.budget import Timing, format_duration, parse_duration, plan
from tests import test_train_cli
from tests.test_train_cli import TINY, one_line_error, train

in_tmp = test_train_cli.in_tmp  # its autouse fixture: every test here runs in tmp_path


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("5m", 300), ("1h", 3600), ("1h30m", 5400),
                                           ("2.5m", 150), ("45", 45), (" 2 min ", 120), ("10sec", 10)])
def test_durations_people_write(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text, fragment", [("0", "more than 0"), ("0s", "more than 0"), ("-5m", "cannot read"),
                                            ("5 parsecs", "cannot read"), ("", "cannot read"), ("m5", "cannot read"),
                                            ("5m blah", "cannot read")])
def test_durations_that_make_no_sense(text, fragment):
    with pytest.raises(ConfigError, match=fragment):
        parse_duration(text)


def test_format_duration():
    assert [format_duration(s) for s in (42, 90, 300, 7920)] == ["42 s", "1 min 30 s", "5 min", "2 h 12 min"]


def test_plan_fits_steps_and_validations_in_what_is_left():
    timing = Timing(elapsed=20.0, step=0.5, validation=2.0, finish=5.0)
    p = plan(300.0, timing)
    spent = timing.elapsed + p.steps * timing.step + (p.steps // p.val_every + 1) * timing.validation + timing.finish
    assert 0.85 * 300 < spent <= 300
    assert p.stop_after == 295.0 and 6 <= p.steps // p.val_every <= 9


def test_plan_leaves_time_to_decode_the_photos_a_run_reaches():
    timing = Timing(elapsed=20.0, step=0.5, validation=2.0, finish=5.0, decode=0.25, photos=400, batch_size=4)
    p = plan(300.0, timing)
    without = plan(300.0, replace(timing, decode=0.0))
    decoding = timing.decode * min(timing.photos, p.steps * timing.batch_size)
    spent = (timing.elapsed + p.steps * timing.step + (p.steps // p.val_every + 1) * timing.validation
             + decoding + timing.finish)
    assert p.steps < without.steps and 0.85 * 300 < spent <= 300
    # A folder the run goes through many times costs each photo's decoding once.
    few = plan(300.0, replace(timing, photos=8))
    assert without.steps - 5 <= few.steps < without.steps


def test_a_budget_below_setup_and_one_step_names_the_smallest_that_works():
    with pytest.raises(TrainingError, match=r"smallest budget that works on this machine is about 29s"):
        plan(20.0, Timing(elapsed=20.0, step=1.5, validation=2.0, finish=5.0))


def base(photo_dir, style_image, *extra):
    return ("--style", style_image, "--content-dir", photo_dir, *TINY, *extra)


@pytest.mark.parametrize("extra, fragment", [
    (("--budget", "0"), "more than 0"),
    (("--budget", "-1m"), "cannot read '-1m' as a duration"),
    (("--budget", "5 parsecs"), "cannot read '5 parsecs' as a duration"),
    (("--budget", "5m", "--steps", "100"), "give --budget or --steps, not both"),
])
def test_bad_budgets_are_one_line_before_any_work(tmp_path, style_image, extra, fragment):
    empty = tmp_path / "no_photos"
    empty.mkdir()  # had any work started, the error would be about the missing photos
    result = train(*base(empty, style_image, *extra))
    assert result.exit_code == 2 and "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert fragment in lines[-1] and len([line for line in lines if line.startswith("Error")]) == 1, result.output
    assert not (tmp_path / "runs").exists()


def test_a_resumed_run_keeps_its_own_plan(tmp_path, photo_dir, style_image):
    assert train(*base(photo_dir, style_image, "--steps", 2, "--name", "x")).exit_code == 0
    result = train("--resume", tmp_path / "runs" / "x", "--budget", "1m")
    assert result.exit_code == 2 and "keeps its own plan" in result.stderr


def test_a_budget_too_small_for_setup_says_the_smallest_that_works(photo_dir, style_image):
    one_line_error(train(*base(photo_dir, style_image, "--budget", "0.01s", "--name", "b")),
                   "the smallest budget that works on this machine is about")


def machine_budget(photo_dir, style_image, *extra) -> float:
    """A budget this machine can keep for the tiny problem: a few times what setup and two steps
    take here now (test machines differ several times in speed, and with their load)."""
    start = time.perf_counter()
    assert train(*base(photo_dir, style_image, "--steps", 2, "--name", "probe", *extra)).exit_code == 0
    return max(8.0, round(5 * (time.perf_counter() - start)))


def test_the_budget_is_kept_and_the_chosen_steps_reproduce_the_run(tmp_path, photo_dir, style_image, monkeypatch):
    from styler.training import budget as budget_module

    measure = budget_module.measure

    def pessimistic(trainer):
        # Tiny steps time noisily on a loaded machine (probe steps of ~0.1 s); planning as if
        # they took twice as long leaves the run room to finish its plan, which is what is
        # checked here. The deadline's own test is the next one.
        probe = measure(trainer)
        return replace(probe, step=2 * probe.step)

    monkeypatch.setattr(budget_module, "measure", pessimistic)
    data = tmp_path / "data"  # a budgeted run also writes into the data folder, not the working folder
    monkeypatch.setenv("STYLER_HOME", str(data))
    # The discriminator on every other step: the probe's steps at successive counts leave no trace.
    gram = ("--style-loss", "gram", "--d-every", "2")
    budget = machine_budget(photo_dir, style_image, *gram)
    start = time.perf_counter()
    result = train(*base(photo_dir, style_image, "--budget", f"{budget}s", "--name", "b", "--json", *gram))
    took = time.perf_counter() - start
    assert result.exit_code == 0, result.output
    assert took <= budget * 1.1, (took, budget)
    summary = json.loads(result.stdout)
    spec = json.loads((data / "runs" / "b" / "run.json").read_text())
    steps, every = spec["config"]["steps"], spec["config"]["val_every"]
    assert spec["config"]["budget_seconds"] == budget and spec["plan"]["steps"] == steps >= 4
    # What the plan rests on: setup, a validation with its preview and checkpoint, the finish.
    assert spec["plan"]["setup_seconds"] > 0 and spec["plan"]["validation_seconds"] > 0
    assert spec["plan"]["finish_seconds"] >= 1.0 and spec["plan"]["decode_seconds"] > 0
    assert summary["steps"] == steps and summary["cut_short"] is None  # it finished its plan in time
    # The same options with --steps N train the same generator, bit for bit.
    again = train(*base(photo_dir, style_image, "--steps", steps, "--val-every", every, "--name", "r", *gram))
    assert again.exit_code == 0, again.output
    a, b = load_file(data / "weights" / "b.safetensors"), load_file(data / "weights" / "r.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_slower_machine_stops_at_the_deadline_and_keeps_the_best(tmp_path, photo_dir, style_image, monkeypatch):
    from styler.training.trainer import Trainer

    # The discriminator on every other step: the probe's steps at successive counts leave no trace.
    gram = ("--style-loss", "gram", "--d-every", "2")
    budget = machine_budget(photo_dir, style_image, *gram)
    step = Trainer.train_step
    calls = []

    def slower_after_planning(self, images):
        if self.plan is not None:  # the probe's steps are done
            calls.append(None)
            if len(calls) > 1:  # after the first real step
                time.sleep(budget / 10)
        return step(self, images)

    monkeypatch.setattr(Trainer, "train_step", slower_after_planning)
    start = time.perf_counter()
    result = train(*base(photo_dir, style_image, "--budget", f"{budget}s", "--name", "d", "--json", *gram))
    assert result.exit_code == 0, result.output
    assert time.perf_counter() - start <= budget * 1.1
    summary = json.loads(result.stdout)
    assert summary["cut_short"] == "deadline" and summary["steps"] < summary["planned_steps"]
    assert summary["best_step"] == summary["steps"]  # the last generator was validated before the finish
    assert (tmp_path / "weights" / "d.safetensors").is_file()


def test_stop_event_ends_the_run_and_keeps_the_best_generator(tmp_path, photo_dir, style_image):
    import threading

    from styler.config import OFFLINE_DEFAULTS, GeneratorConfig
    from dataclasses import replace
    from styler.training.trainer import Trainer

    config = replace(OFFLINE_DEFAULTS, name="s", steps=50, image_size=32, style_size=64, batch_size=2,
                     num_workers=0, val_every=2, generator=GeneratorConfig(base_channels=4, num_residual=1))
    trainer = Trainer(config, style_image, photo_dir, tmp_path / "weights", torch.device("cpu"),
                      run_dir=tmp_path / "runs" / "s")
    stop = threading.Event()
    result = trainer.run(lambda report: stop.set() if report.step == 3 else None, stop=stop)
    assert result.steps == 3 and result.cut_short == "stop" and result.best_step == 3
    assert result.weights_path.is_file()


def tiny_trainer(tmp_path, photo_dir, style_image):
    from styler.config import OFFLINE_DEFAULTS, GeneratorConfig
    from styler.training.trainer import Trainer

    config = replace(OFFLINE_DEFAULTS, name="m", steps=50, image_size=32, style_size=64, batch_size=2,
                     num_workers=0, generator=GeneratorConfig(base_channels=4, num_residual=1))
    return Trainer(config, style_image, photo_dir, tmp_path / "weights", torch.device("cpu"),
                   run_dir=tmp_path / "runs" / "m")


def test_the_probe_times_the_settled_step_not_the_first_slow_ones(tmp_path, photo_dir, style_image, monkeypatch):
    from styler.training.budget import measure
    from styler.training.trainer import Trainer

    trainer = tiny_trainer(tmp_path, photo_dir, style_image)
    step, calls = Trainer.train_step, []

    def slow_start(self, images):
        calls.append(None)
        if len(calls) <= 2:  # a process's first steps: page faults, kernel choices
            time.sleep(1.0)
        return step(self, images)

    monkeypatch.setattr(Trainer, "train_step", slow_start)
    before = {k: v.clone() for k, v in trainer.generator.state_dict().items()}
    probe = measure(trainer)
    # Timing the first steps (one warm-up, the mean of the next two) would say 0.5 s or more.
    assert probe.step < 0.45, probe
    assert len(calls) >= 5 and probe.validation > 0 and probe.finish >= 1.0 and probe.decode > 0
    after = trainer.generator.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # every update undone


def test_the_probe_counts_what_a_validation_costs_the_step_after_it(tmp_path, photo_dir, style_image, monkeypatch):
    from styler.training.budget import measure
    from styler.training.trainer import Trainer

    trainer = tiny_trainer(tmp_path, photo_dir, style_image)
    step, validate, validated = Trainer.train_step, Trainer.validate, []

    def slow_after_validation(self, images):
        if validated and len(validated) == 1:
            validated.append(None)
            time.sleep(1.0)
        return step(self, images)

    monkeypatch.setattr(Trainer, "train_step", slow_after_validation)
    monkeypatch.setattr(Trainer, "validate", lambda self: validated.append(None) or validate(self))
    probe = measure(trainer)
    assert probe.validation >= 1.0 and probe.step < 0.5, probe


def test_a_typical_step_averages_over_the_discriminators_cadence():
    from styler.training.budget import typical_step

    times, updates = [3.0, 1.0, 3.1, 0.9, 2.9], [True, False, True, False, True]
    assert typical_step(times, updates, 2) == pytest.approx((3.0 + 0.95) / 2)
    assert typical_step(times, updates, 3) == pytest.approx((3.0 + 2 * 0.95) / 3)
    assert typical_step(times, updates, 1) == 2.9  # every step updates it: the median
    assert typical_step([1.0, 2.0], [False, False], 2) == 1.5  # no update timed: the median


def test_the_probe_times_steps_with_and_without_the_discriminators_update(tmp_path, photo_dir, style_image,
                                                                         monkeypatch):
    """With ``d_every`` 2 the timed steps run at successive step counts, so half of them update the
    discriminator, and the planned step is their average; the count is restored."""
    from styler.training.budget import measure
    from styler.training.trainer import Trainer

    trainer = tiny_trainer(tmp_path, photo_dir, style_image)
    trainer.config = replace(trainer.config, d_every=2)
    step, counts = Trainer.train_step, []

    def costly_update(self, images):
        counts.append(self.step)
        if self.step % 2 == 0:  # what the discriminator's update adds to a step
            time.sleep(1.0)
        return step(self, images)

    monkeypatch.setattr(Trainer, "train_step", costly_update)
    probe = measure(trainer)
    timed = counts[2:]  # after two warm-up steps
    assert timed == list(range(len(timed))) and len(timed) >= 3 and trainer.step == 0
    # Half a 1 s update on top of a tiny step; timing only steps that update it would say 1 s.
    assert 0.4 < probe.step < 0.9, probe
