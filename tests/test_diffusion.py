"""SOPHON's diffusion mode: losses on known inputs, the simulation on a tiny UNet, the trainer, the attacks, the
pipeline folder, and a fast end-to-end protection run."""

from __future__ import annotations

import math

import pytest
import torch
from datasets import Dataset
from diffusers import DDPMPipeline

from hf_nft import NFTConfig, NFTTrainer
from hf_nft.attacks.batches import AttackData
from hf_nft.attacks.runner import execute
from hf_nft.attacks.spec import AttackSpec
from hf_nft.data import load_domain
from hf_nft.diffusion.attacks import DenoisingMSE
from hf_nft.diffusion.denoising import (
    add_noise,
    batch_loss,
    bounded_ascent_loss,
    denoising_mse,
    dos_loss,
    fixed_noise_batches,
    log_ascent_loss,
    make_scheduler,
    mse_ascent_loss,
    nft_loss_function,
)
from hf_nft.diffusion.domain_classifier import (
    NEITHER,
    domain_accuracy,
    domain_dataset,
    domain_fractions,
    neither_images,
    pixel_values,
    predicted_domains,
    restricted_fraction,
    train_domain_classifier,
)
from hf_nft.diffusion.evaluation import denoising_score
from hf_nft.diffusion.sampling import generate, tile
from hf_nft.diffusion.training import save_pipeline, small_unet
from hf_nft.methods._simulation import AdversaryStrategy, FineTuningSimulation
from hf_nft.methods.sophon_diffusion import SophonDiffusion

TINY = (8, 16)


def images(n: int, seed: int = 0) -> Dataset:
    generator = torch.Generator().manual_seed(seed)
    pixels = (torch.rand(n, 1, 16, 16, generator=generator) * 2 - 1).numpy()
    return Dataset.from_dict({"pixel_values": pixels, "labels": [i % 2 for i in range(n)]}).with_format("torch")


def tiny_config(tmp_path, **overrides) -> NFTConfig:
    values = {"output_dir": str(tmp_path), "nft_method": "sophon_diffusion", "max_steps": 4, "inner_steps": 2,
              "report_to": [], "save_strategy": "no", "remove_unused_columns": False,
              "per_device_train_batch_size": 8, "adversary_batch_sizes": [8], "query_batch_size": 8,
              "adversary_pool": ["adam:0.001"], "disable_tqdm": True, "logging_steps": 2, "use_cpu": True}
    values.update(overrides)
    return NFTConfig(**values)


def test_losses_on_known_inputs():
    prediction = torch.tensor([[1.0, -2.0], [0.0, 3.0]])
    noise = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    assert denoising_mse(prediction, noise).item() == pytest.approx((0 + 4 + 1 + 4) / 4)
    assert dos_loss(prediction, noise).item() == pytest.approx((1 + 4 + 0 + 9) / 4)
    assert mse_ascent_loss(prediction, noise).item() == pytest.approx(-9 / 4)
    assert bounded_ascent_loss(prediction, noise, bound=1.0).item() == pytest.approx(-1.0)
    assert nft_loss_function("bounded_ascent", 5.0)(prediction, noise).item() == pytest.approx(-9 / 4)
    assert log_ascent_loss(prediction, noise).item() == pytest.approx(-math.log(9 / 4))
    capped = prediction.clone().requires_grad_(True)
    bounded_ascent_loss(capped, noise, bound=1.0).backward()
    assert torch.count_nonzero(capped.grad) == 0  # no push beyond the bound
    metric = DenoisingMSE()
    assert metric([(prediction, {"noise": noise}), (noise, {"noise": noise})]) == pytest.approx(9 / 8)
    assert not metric.higher_is_better


def test_noising_follows_the_schedule_and_fixed_batches_repeat():
    scheduler = make_scheduler(100)
    x = torch.rand(4, 1, 16, 16)
    t = torch.tensor([0, 10, 50, 99])
    noisy, _, noise = add_noise(x, scheduler, torch.Generator().manual_seed(0), t)
    alpha_bar = scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
    torch.testing.assert_close(noisy, alpha_bar.sqrt() * x + (1 - alpha_bar).sqrt() * noise)
    batch = [{"pixel_values": x}]
    first, again = (fixed_noise_batches(batch, scheduler, [10, 90], seed=3) for _ in range(2))
    assert len(first) == 2 and all(torch.equal(a["noise"], b["noise"]) for a, b in zip(first, again))
    assert first[1]["timestep"].tolist() == [90] * 4
    _, low, _ = add_noise(torch.rand(256, 1, 4, 4), scheduler, torch.Generator().manual_seed(0), max_timestep=20)
    assert 0 <= int(low.min()) and int(low.max()) < 20
    with pytest.raises(ValueError, match="timesteps"):
        fixed_noise_batches(batch, scheduler, [100])
    with pytest.raises(ValueError, match="beta_schedule"):
        make_scheduler(100, "cosine")
    with pytest.raises(ValueError, match="pixel_values"):
        batch_loss(denoising_mse, lambda b: None, {"images": x}, scheduler)


def test_simulation_on_a_tiny_unet_gives_a_meta_gradient_and_resets_only_named_output_layers():
    model = small_unet(widths=TINY)
    before = {name: value.clone() for name, value in model.state_dict().items()}
    scheduler = make_scheduler(100)
    generator = torch.Generator().manual_seed(0)
    adversary = lambda forward, batch: batch_loss(denoising_mse, forward, batch, scheduler, generator)
    suppression = lambda forward, batch: batch_loss(dos_loss, forward, batch, scheduler, generator)
    stream = iter([{"pixel_values": images(12, seed=s)[:]["pixel_values"]} for s in range(10)])
    simulation = FineTuningSimulation(model, adversary, suppression)
    assert simulation.head_layers == []
    result = simulation.run(AdversaryStrategy("adam", 1e-2, 8, reset_head=False), stream, steps=3, query_size=4)
    assert len(result.suppression_losses) == 4 and len(result.adversary_losses) == 3
    norm = sum(float(g.norm()) ** 2 for g in result.meta_gradients.values()) ** 0.5
    assert math.isfinite(norm) and norm > 0
    assert any(not torch.equal(result.adapted_parameters[n], p) for n, p in model.named_parameters())
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name
    with pytest.raises(ValueError, match="no classification head"):
        simulation.run(AdversaryStrategy("adam", 1e-2, 8, reset_head=True), stream, steps=1, query_size=4)
    output = FineTuningSimulation(model, adversary, suppression, head_layers=SophonDiffusion.head_layers)
    reset = output.run(AdversaryStrategy("sgd", 1e-12, 8, reset_head=True), stream, steps=1, query_size=4,
                       generator=torch.Generator().manual_seed(0))
    assert len(reset.suppression_losses) == 3  # released weights, then the reset start and one step
    changed = {n for n, p in model.named_parameters() if not torch.allclose(reset.adapted_parameters[n], p, atol=1e-9)}
    assert changed == {"conv_out.weight", "conv_out.bias"}  # a new UNet's output norm is already ones and zeros
    assert torch.equal(reset.adapted_parameters["conv_norm_out.weight"], torch.ones_like(model.conv_norm_out.weight))
    bound = 1 / model.conv_out.weight[0].numel() ** 0.5
    assert float(reset.adapted_parameters["conv_out.weight"].abs().max()) <= bound
    with pytest.raises(ValueError, match="no layer named"):
        FineTuningSimulation(model, adversary, suppression, head_layers=["conv_missing"]).run(
            AdversaryStrategy("sgd", 1e-12, 8, reset_head=True), stream, steps=1, query_size=4)


@pytest.mark.parametrize("nft_loss", ["dos", "mse_ascent", "bounded_ascent"])
def test_trainer_runs_sophon_diffusion_and_logs_both_loops(tmp_path, nft_loss):
    model = small_unet(widths=TINY)
    start = {name: p.clone() for name, p in model.named_parameters()}
    trainer = NFTTrainer(model=model, args=tiny_config(tmp_path, diffusion_nft_loss=nft_loss),
                         train_dataset=images(32), restricted_dataset=images(32, seed=1))
    trainer.train()
    logged = {key for entry in trainer.state.log_history for key in entry}
    assert {"fts_loss", "fts_loss_start", "ntr_loss"} <= logged
    assert trainer.method.settings()["diffusion_nft_loss"] == nft_loss
    assert any(not torch.equal(p, start[name]) for name, p in model.named_parameters())


def test_distillation_reference_stays_fixed_and_suppression_stays_below_the_timestep(tmp_path):
    model = small_unet(widths=TINY)
    given = {name: p.clone() for name, p in model.named_parameters()}
    args = tiny_config(tmp_path, diffusion_nft_loss="log_ascent", diffusion_suppression_max_timestep=30,
                       diffusion_ntr_distillation=1.0, ntr_steps=1, diffusion_final_ntr_steps=2,
                       diffusion_final_ntr_learning_rate=1e-4)
    trainer = NFTTrainer(model=model, args=args, train_dataset=images(32), restricted_dataset=images(32, seed=1))
    trainer.train()
    method = trainer.method
    reference = dict(method.reference.named_parameters())
    assert all(torch.equal(reference[name], value) for name, value in given.items())
    assert any(not torch.equal(p, given[name]) for name, p in model.named_parameters())
    method.trainer.state.global_step = 0
    assert method.is_suppression_step()
    method.trainer.state.global_step = 2  # an FTS step of the cycle, but within the final NTR-only steps
    assert not method.is_suppression_step()
    inputs = {"pixel_values": images(4)[:]["pixel_values"]}
    for step, rate in ((2, args.learning_rate), (3, 1e-4)):  # annealed from learning_rate to the final rate
        method.trainer.state.global_step = step
        method.training_loss(model, inputs)
        assert all(group["lr"] == pytest.approx(rate) for group in trainer.optimizer.param_groups), step
    seen = []
    method._nft_loss_of_batch(lambda batch: seen.append(batch["timestep"]) or model(**batch),
                              {"pixel_values": images(64)[:]["pixel_values"]})
    assert int(seen[0].max()) < 30
    method._generator.manual_seed(0)
    distilled = method.reinforcement_loss(model, inputs)
    method.reference, method._generator = None, method._generator.manual_seed(0)
    assert distilled > method.reinforcement_loss(model, inputs)  # the pull towards the given model's prediction
    assert method.settings()["diffusion_suppression_max_timestep"] == 30


@pytest.mark.parametrize(("target", "fts_steps_run"), [(1e-9, [0, 2]), (1e9, [0, 2, 4, 6])])
def test_alternation_ends_once_the_simulated_adversary_fails_by_the_target(tmp_path, target, fts_steps_run):
    args = tiny_config(tmp_path, max_steps=10, diffusion_final_ntr_steps=2, ntr_steps=1, logging_steps=1,
                       diffusion_stop_adversary_loss=target, diffusion_stop_window=2,
                       diffusion_final_ntr_learning_rate=1e-5)
    trainer = NFTTrainer(model=small_unet(widths=TINY), args=args, train_dataset=images(32),
                         restricted_dataset=images(32, seed=1))
    trainer.train()
    # Log entries carry the step after the optimizer step (1-based): step s logs the loss of global step s - 1.
    suppression = [entry["step"] - 1 for entry in trainer.state.log_history if "fts_loss" in entry]
    assert suppression == fts_steps_run
    reached = target < 1
    assert trainer.method.repair_start() == (3 if reached else 8)
    ended = [entry["alternation_end_step"] for entry in trainer.state.log_history if "alternation_end_step" in entry]
    assert ended == ([3.0] if reached else [])
    assert trainer.method.settings()["diffusion_stop_adversary_loss"] == target
    inputs = {"pixel_values": images(4)[:]["pixel_values"]}
    for step, rate in ((trainer.method.repair_start(), args.learning_rate), (9, 1e-5)):  # annealed over the repair
        trainer.state.global_step = step
        trainer.method.training_loss(trainer.model, inputs)
        assert all(group["lr"] == pytest.approx(rate) for group in trainer.optimizer.param_groups), step


def test_repair_keeps_every_kth_step_an_fts_step_without_moving_its_start(tmp_path):
    args = tiny_config(tmp_path, max_steps=12, diffusion_final_ntr_steps=2, ntr_steps=1, logging_steps=1,
                       diffusion_stop_adversary_loss=1e-9, diffusion_stop_window=2, diffusion_repair_fts_every=3)
    trainer = NFTTrainer(model=small_unet(widths=TINY), args=args, train_dataset=images(32),
                         restricted_dataset=images(32, seed=1))
    trainer.train()
    suppression = [entry["step"] - 1 for entry in trainer.state.log_history if "fts_loss" in entry]
    # The alternation's two, then every third repair step from step 3; step 11 would leave no NTR step after it.
    assert suppression == [0, 2, 5, 8]
    assert trainer.method.repair_start() == 3
    ended = [entry["alternation_end_step"] for entry in trainer.state.log_history if "alternation_end_step" in entry]
    assert ended == [3.0]
    assert trainer.method.settings()["diffusion_repair_fts_every"] == 3


def test_a_due_maintenance_step_waits_until_the_original_domain_is_within_tolerance(tmp_path):
    args = tiny_config(tmp_path, max_steps=40, diffusion_final_ntr_steps=30, diffusion_repair_fts_every=4,
                       diffusion_repair_original_tolerance=0.05)
    trainer = NFTTrainer(model=small_unet(widths=TINY), args=args, train_dataset=images(32),
                         restricted_dataset=images(32, seed=1))
    method, state = trainer.method, trainer.state
    state.max_steps = 40  # the repair runs from step 10
    method._last_fts_step = 10  # the first maintenance step; the next is due at step 14
    method._original_ratios.extend([1.2, 1.0])  # 10% above the reference: not within 5%
    decisions = {}
    for step in (11, 14, 20):
        state.global_step = step
        decisions[step] = method.is_suppression_step()
    assert method.original_ratio() == pytest.approx(1.1)
    assert decisions == {11: False, 14: False, 20: False}  # not due, then due but waiting for the repair
    method._original_ratios.append(0.9)  # (1.2 + 1.0 + 0.9) / 3 = 1.033: within 5%
    assert method.is_suppression_step()  # step 20, six steps after it was due
    state.global_step = 36
    assert not method.is_suppression_step()  # due and within tolerance, but no whole period of NTR would follow
    state.global_step = 30
    assert method.is_suppression_step()
    method.args.diffusion_repair_quiet_steps = 12
    assert not method.is_suppression_step()  # within the last 12 steps: only NTR from here on
    state.global_step = 27
    assert method.is_suppression_step()
    state.global_step = 10
    assert method.is_suppression_step()  # another micro-batch of the FTS step itself
    # NTR records the mean over images of the model's over the given model's denoising MSE on the same noisy image.
    method._original_ratios.clear()
    with torch.no_grad():
        trainer.model.conv_out.bias.add_(0.5)  # the released model drifts from the one given to the trainer
    inputs = {"pixel_values": images(4)[:]["pixel_values"]}
    method._generator.manual_seed(0)
    method.reinforcement_loss(trainer.model, inputs)
    method._generator.manual_seed(0)
    noisy, timesteps, noise = add_noise(inputs["pixel_values"], method.scheduler, method._generator)
    with torch.no_grad():
        errors = [(model(sample=noisy, timestep=timesteps).sample - noise).pow(2).mean(dim=(1, 2, 3))
                  for model in (trainer.model, method.reference)]
    expected = (errors[0] / errors[1]).mean().item()
    assert expected != pytest.approx((errors[0].mean() / errors[1].mean()).item(), rel=1e-3)  # not the MSE ratio
    assert list(method._original_ratios) == [pytest.approx(expected, rel=1e-5)]
    assert method.settings()["diffusion_repair_original_tolerance"] == 0.05


def test_maintenance_with_an_ample_tolerance_runs_on_the_period_and_logs_the_ratio(tmp_path):
    args = tiny_config(tmp_path, max_steps=12, diffusion_final_ntr_steps=2, ntr_steps=1, logging_steps=1,
                       diffusion_stop_adversary_loss=1e-9, diffusion_stop_window=2, diffusion_repair_fts_every=3,
                       diffusion_repair_original_tolerance=1e9)
    trainer = NFTTrainer(model=small_unet(widths=TINY), args=args, train_dataset=images(32),
                         restricted_dataset=images(32, seed=1))
    trainer.train()
    history = trainer.state.log_history
    assert [entry["step"] - 1 for entry in history if "fts_loss" in entry] == [0, 2, 5, 8]
    assert trainer.method.maintenance_steps == [5, 8]
    ratios = [entry["ntr_original_ratio"] for entry in history if "ntr_original_ratio" in entry]
    assert len(ratios) == 8 and all(math.isfinite(ratio) and ratio > 0 for ratio in ratios)


def test_bad_diffusion_settings_and_data_are_value_errors(tmp_path):
    with pytest.raises(ValueError, match="diffusion_nft_loss"):
        tiny_config(tmp_path, diffusion_nft_loss="zero")
    with pytest.raises(ValueError, match="diffusion_suppression_max_timestep"):
        tiny_config(tmp_path, diffusion_suppression_max_timestep=101)
    with pytest.raises(ValueError, match="diffusion_nft_bound"):
        tiny_config(tmp_path, diffusion_nft_bound=0.0)
    with pytest.raises(ValueError, match="diffusion_ntr_distillation"):
        tiny_config(tmp_path, diffusion_ntr_distillation=-1.0)
    with pytest.raises(ValueError, match="diffusion_final_ntr_steps"):
        tiny_config(tmp_path, diffusion_final_ntr_steps=4)
    with pytest.raises(ValueError, match="diffusion_final_ntr_learning_rate"):
        tiny_config(tmp_path, diffusion_final_ntr_learning_rate=-1.0)
    with pytest.raises(ValueError, match="diffusion_stop_adversary_loss"):
        tiny_config(tmp_path, diffusion_stop_adversary_loss=-1.0)
    with pytest.raises(ValueError, match="diffusion_stop_window"):
        tiny_config(tmp_path, diffusion_stop_window=0)
    with pytest.raises(ValueError, match="diffusion_repair_fts_every"):
        tiny_config(tmp_path, diffusion_repair_fts_every=-1)
    with pytest.raises(ValueError, match="diffusion_repair_original_tolerance"):
        tiny_config(tmp_path, diffusion_repair_original_tolerance=-0.1)
    with pytest.raises(ValueError, match="diffusion_repair_fts_every > 0"):
        tiny_config(tmp_path, diffusion_repair_original_tolerance=0.1)
    with pytest.raises(ValueError, match="diffusion_repair_quiet_steps must be non-negative"):
        tiny_config(tmp_path, diffusion_repair_fts_every=4, diffusion_repair_quiet_steps=-1)
    with pytest.raises(ValueError, match="diffusion_repair_quiet_steps shapes"):
        tiny_config(tmp_path, diffusion_repair_quiet_steps=10)
    with pytest.raises(ValueError, match="remove_unused_columns"):
        NFTTrainer(model=small_unet(widths=TINY), args=tiny_config(tmp_path, remove_unused_columns=True),
                   train_dataset=images(8), restricted_dataset=images(8))
    wrong = Dataset.from_dict({"pixel_values": torch.zeros(4, 1, 8, 8).numpy()}).with_format("torch")
    with pytest.raises(ValueError, match="shape"):
        NFTTrainer(model=small_unet(widths=TINY), args=tiny_config(tmp_path), train_dataset=images(8),
                   restricted_dataset=wrong)
    with pytest.raises(ValueError, match="UNet2DModel"):
        from conftest import tiny_resnet

        NFTTrainer(model=tiny_resnet(), args=tiny_config(tmp_path), train_dataset=images(8), restricted_dataset=images(8))


def test_diffusion_attacks_train_the_right_parameters_and_lower_the_mse():
    model = small_unet(widths=TINY)
    data = AttackData(images(48), images(16, seed=2))
    full = execute(model, AttackSpec(kind="diffusion_finetune", steps=20, eval_every=10, learning_rate=3e-3),
                   data, DenoisingMSE())
    assert full.values[-1] < full.values[0]
    assert len(full.trainable) == len(list(model.parameters()))
    lora = execute(model, AttackSpec(kind="diffusion_lora", steps=4, eval_every=2), data, DenoisingMSE(),
                   keep_model=True)
    assert lora.trainable and all("lora_" in name for name in lora.trainable)
    assert any(".to_q." in name for name in lora.trainable) and any(".conv1." in name for name in lora.trainable)
    assert not any("lora_" in name for name, _ in model.named_parameters())  # the attacked model is a copy
    with pytest.raises(ValueError, match="no classification head"):
        execute(model, AttackSpec(kind="diffusion_finetune", reset_head=True), data, DenoisingMSE())


def test_pipeline_folder_loads_with_ddpm_pipeline_and_samples(tmp_path):
    unet = small_unet(widths=TINY)
    scheduler = make_scheduler(100)
    save_pipeline(unet, scheduler, tmp_path / "pipe")
    loaded = DDPMPipeline.from_pretrained(tmp_path / "pipe")
    assert loaded.scheduler.config.num_train_timesteps == 100
    for name, value in unet.state_dict().items():
        assert torch.equal(loaded.unet.state_dict()[name], value)
    samples = generate(loaded.unet, loaded.scheduler, count=3, inference_steps=4, seed=0)
    assert samples.shape == (3, 1, 16, 16) and samples.min() >= -1 and samples.max() <= 1
    torch.testing.assert_close(samples, generate(loaded.unet, loaded.scheduler, count=3, inference_steps=4, seed=0))
    assert tile(samples, columns=2).shape == (2 * 17 - 1, 2 * 17 - 1)


def test_domain_dataset_labels_original_restricted_and_neither():
    original, restricted = images(3), images(2, seed=1)
    both = domain_dataset(original, restricted)
    # Two original, two restricted images as sources of "neither" images, each shuffled and each noised.
    assert both[:]["labels"].tolist() == [0, 0, 0, 1, 1] + [2] * 8
    assert both.features["labels"].names == ["original", "restricted", "neither"]
    sources = torch.cat([original[:2]["pixel_values"], restricted[:]["pixel_values"]])
    neither = both[5:]["pixel_values"]
    shuffled, noised = neither[:4], neither[4:]
    # Shuffled: the same intensities, not the same image.
    assert torch.equal(shuffled.flatten(1).sort(dim=1).values, sources.flatten(1).sort(dim=1).values)
    assert not torch.equal(shuffled, sources)
    # Noised: within [-1, 1], and neither the source nor a rearrangement of it.
    assert noised.min() >= -1 and noised.max() <= 1
    assert not torch.allclose(noised.flatten(1).sort(dim=1).values, sources.flatten(1).sort(dim=1).values)


def test_the_domain_classifier_calls_real_images_by_their_domain_and_noise_neither(tmp_path):
    """The sample score counts only images that look like the restricted domain: noise and pixel-shuffled restricted
    images (its intensities without its structure) are "neither"."""
    mnist, uci = load_domain("mnist").select(range(1024)), load_domain("uci-digits").select(range(1024))
    classifier = train_domain_classifier(mnist, uci, tmp_path, epochs=2.0, progress=False)
    mnist_test, uci_test = load_domain("mnist", "test").select(range(200)), load_domain("uci-digits", "test")
    assert domain_accuracy(classifier, mnist_test, uci_test) > 0.95
    restricted = torch.as_tensor(pixel_values(uci_test))
    assert restricted_fraction(classifier, restricted) > 0.95
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(restricted.shape, generator=generator).clamp(-1, 1)
    shuffled = torch.as_tensor(neither_images(pixel_values(uci_test), seed=1)[: len(restricted)])
    for junk in (noise, shuffled):
        assert (predicted_domains(classifier, junk) == NEITHER).float().mean() > 0.9
        assert restricted_fraction(classifier, junk) < 0.05
    fractions = domain_fractions(classifier, torch.cat([restricted, noise]))
    assert list(fractions) == ["original", "restricted", "neither"] and sum(fractions.values()) == pytest.approx(1)
    assert fractions["restricted"] == pytest.approx(restricted_fraction(classifier, torch.cat([restricted, noise])))
    assert fractions["restricted"] > 0.45 and fractions["neither"] > 0.45


def test_protection_keeps_the_original_domain_and_slows_restricted_fine_tuning(tmp_path):
    """Fast end to end on real digits: after the same attack the protected model denoises the restricted domain
    worse than the unprotected one, and its original-domain MSE stays within 50% of the unprotected one's."""
    from hf_nft.diffusion_quickstart import pretrain_ddpm, protection_config

    mnist, uci = load_domain("mnist").select(range(512)), load_domain("uci-digits").select(range(512))
    mnist_test, uci_test = load_domain("mnist", "test").select(range(128)), load_domain("uci-digits", "test")
    unprotected, _ = pretrain_ddpm(tmp_path, mnist, steps=150, progress=False, widths=TINY)
    save_pipeline(unprotected, make_scheduler(), tmp_path / "unprotected")
    protected = DDPMPipeline.from_pretrained(tmp_path / "unprotected").unet
    args = protection_config(tmp_path / "protection", fast=True, disable_tqdm=True, max_steps=40, ntr_steps=3)
    NFTTrainer(model=protected, args=args, train_dataset=mnist, restricted_dataset=uci).train()
    attack = AttackSpec(kind="diffusion_finetune", optimizer="adam", learning_rate=1e-3, batch_size=32, steps=20,
                        eval_every=10)
    data = AttackData(uci, uci_test.select(range(128)))
    after = {role: execute(model, attack, data, DenoisingMSE()).final
             for role, model in (("protected", protected), ("unprotected", unprotected))}
    original = {role: denoising_score(model, mnist_test, 100, "squaredcos_cap_v2")
                for role, model in (("protected", protected), ("unprotected", unprotected))}
    assert after["protected"] > after["unprotected"], after
    assert original["protected"] <= 1.5 * original["unprotected"], original


def test_evaluation_reports_per_timestep_mse_whose_mean_is_the_headline():
    from hf_nft.diffusion.evaluation import BEFORE, ORIGINAL, evaluate_diffusion_protection

    models = {"protected": small_unet(widths=TINY), "unprotected": small_unet(widths=TINY, seed=1)}
    attack = AttackSpec(kind="diffusion_finetune", name="ft", optimizer="adam", learning_rate=1e-3, batch_size=8,
                        steps=2, eval_every=2)
    evaluation = evaluate_diffusion_protection(models, images(16), images(8, seed=1), [attack],
                                               original_eval=images(8, seed=2), progress=False)
    report = evaluation.report
    for stage, headline in ((ORIGINAL, report.original), (BEFORE, report.before),
                            ("ft", {role: o.final_mean for role, o in report.results["ft"].items()})):
        for role, by_step in evaluation.per_timestep[stage].items():
            assert list(by_step) == [10, 30, 50, 70, 90]
            assert sum(by_step.values()) / 5 == pytest.approx(headline[role], rel=1e-5), (stage, role)
    assert "denoising_mse_per_timestep" in evaluation.to_dict()
