"""The trade-off of ``diffusion_repair_fts_every``, ``diffusion_repair_original_tolerance`` and
``diffusion_repair_quiet_steps`` (README, "Maintenance FTS steps during the repair" and "The quiet end of the
repair"): protect the diffusion quickstart's pre-trained UNet with the quickstart's settings and each given
maintenance period (0: NTR-only repair), tolerance (0: maintenance on the period) and quiet end, attack it with the
quickstart's full fine-tuning (Adam 1e-3, 150 steps at batch 32), and print a table: original-domain MSE and its
ratio to the unprotected model's, restricted MSE after the attack, and the fraction of samples the quickstart's
domain classifier assigns to the restricted domain.

    python benchmarks/diffusion_repair_maintenance.py runs/quickstart/diffusion --every 0 16 40 --tolerance 0 0.05
    python benchmarks/diffusion_repair_maintenance.py runs/quickstart/diffusion --every 8 --tolerance 0.08 \
        --quiet 8 30 50 100
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

from diffusers import UNet2DModel
from transformers import AutoModelForImageClassification

from hf_nft.data import load_domain
from hf_nft.diffusion.evaluation import SampleSettings, evaluate_diffusion_protection
from hf_nft.diffusion_quickstart import (
    EVAL_IMAGES,
    FULL_FINETUNE,
    REPAIR_QUIET_STEPS,
    diffusion_attacks,
    protection_config,
)
from hf_nft.trainer import NFTTrainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("quickstart", type=Path, help="the diffusion quickstart's output folder (OUTPUT/diffusion)")
    parser.add_argument("--every", type=int, nargs="+", default=[0, 16, 40], help="maintenance periods to run")
    parser.add_argument("--tolerance", type=float, nargs="+", default=[0.0],
                        help="original-domain tolerances to run with each nonzero period")
    parser.add_argument("--quiet", type=int, nargs="+", default=[REPAIR_QUIET_STEPS],
                        help="quiet ends (no maintenance step in that many last steps) to run with each nonzero period")
    parser.add_argument("--seed", type=int, default=0, help="the quickstart's seed")
    args = parser.parse_args()
    original_train = load_domain("mnist")
    original_test = load_domain("mnist", "test").select(range(EVAL_IMAGES["original"]))
    restricted_train = load_domain("uci-digits")
    restricted_test = load_domain("uci-digits", "test").select(range(EVAL_IMAGES["restricted"]))
    classifier = AutoModelForImageClassification.from_pretrained(args.quickstart / "domain_classifier")
    unprotected = UNet2DModel.from_pretrained(args.quickstart / "unprotected" / "unet")
    models = {"unprotected": unprotected}
    settings = [(0, 0.0, 0)] if 0 in args.every else []  # the NTR-only repair takes no tolerance or quiet end
    settings += itertools.product([every for every in args.every if every > 0], args.tolerance, args.quiet)
    for every, tolerance, quiet in settings:
        name = (f"every {every}" + (f" tol {tolerance:g}" if tolerance > 0 else "")
                + (f" quiet {quiet}" if quiet else ""))
        model = UNet2DModel.from_pretrained(args.quickstart / "unprotected" / "unet")
        config = protection_config(args.quickstart / name.replace(" ", "_"), seed=args.seed, disable_tqdm=True,
                                   diffusion_repair_fts_every=every, diffusion_repair_original_tolerance=tolerance,
                                   diffusion_repair_quiet_steps=quiet)
        NFTTrainer(model=model, args=config, train_dataset=original_train,
                   restricted_dataset=restricted_train).train()
        models[name] = model
    evaluation = evaluate_diffusion_protection(
        models, restricted_train, restricted_test, diffusion_attacks(seed=args.seed)[:1], original_eval=original_test,
        samples=SampleSettings(classifier, count=64, inference_steps=25, seed=args.seed), progress=False)
    report, fractions = evaluation.report, evaluation.restricted_fraction[FULL_FINETUNE]
    reference = report.original["unprotected"]
    print(f"{'model':<28}{'original MSE':>14}{'ratio':>8}{'after attack':>14}{'samples restricted':>20}")
    for role in models:
        print(f"{role:<28}{report.original[role]:>14.3f}{report.original[role] / reference:>8.2f}"
              f"{report.results[FULL_FINETUNE][role].final_mean:>14.3f}{fractions[role]:>20.3f}")


if __name__ == "__main__":
    main()
