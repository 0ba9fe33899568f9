"""PEFT's nested LoraConfig settings (LoftQ, EVA, CorDA, LoRA-GA, KaSA, BD-LoRA, ...), key by key.

Each class mirrors one dataclass of the pinned PEFT (peft/tuners/lora/config.py): the same keys,
types, defaults and `__post_init__` checks, so a typo or an out-of-range value is reported at its
line instead of inside `get_peft_model`. A section written with only some keys is completed with
PEFT's defaults, so PEFT receives every key it reads (e.g. LoftQ's `loftq_iter`).
tests/schema/test_peft_surface.py checks keys and defaults against PEFT's dataclasses.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

Name = Annotated[str, Field(min_length=1)]
Token = Annotated[int, Field(ge=0)]


class _Sub(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=False)


class LoftQSection(_Sub):
    """peft.LoftQConfig."""

    loftq_bits: Literal[4, 8] = Field(4, description="Bits LoftQ quantises the base weights to (nf4 or int8).")
    loftq_iter: int = Field(1, ge=1, description="Alternating quantise / low-rank iterations.")


class EvaSection(_Sub):
    """peft.EvaConfig: EVA's data-driven init (needs calibration batches at apply time)."""

    rho: float = Field(2.0, ge=1.0, description="Rank redistribution budget: a layer gets at most r * rho.")
    tau: float = Field(0.99, ge=0.0, le=1.0, description="Cosine-similarity threshold that stops the SVD early.")
    use_label_mask: bool = Field(True, description="Ignore positions whose label is label_mask_value.")
    label_mask_value: int = Field(-100, description="Label value of ignored positions.")
    whiten: bool = Field(False, description="Whiten the singular vectors.")
    adjust_scaling_factors: bool = Field(True, description="Rescale alpha after the ranks are redistributed.")


class CordaSection(_Sub):
    """peft.CordaConfig: CorDA's context-oriented decomposition (needs `preprocess_corda` with data)."""

    cache_file: str | None = Field(None, description="File to store the SVD cache in.")
    covariance_file: str | None = Field(None, description="File to store the covariance matrices in.")
    corda_method: Literal["ipm", "kpm"] = Field("ipm", description="ipm (instruction-previewed) or kpm "
                                                                   "(knowledge-preserved).")
    verbose: bool = Field(False, description="Print CorDA's progress.")
    use_float16_for_covariance: bool = Field(False, description="Keep the covariance matrices in float16.")
    prune_temporary_fields: bool = Field(True, description="Drop CorDA's temporary per-layer fields afterwards.")


class LoraGASection(_Sub):
    """peft.LoraGAConfig: LoRA-GA's gradient-aligned init (needs `preprocess_loraga` with data)."""

    direction: Literal["ArBr", "A2rBr", "ArB2r", "random"] = Field(
        "ArB2r", description="How the gradient's singular vectors are split between A and B.")
    scale: Literal["stable", "weight_svd", "gd_scale", "unit"] = Field("stable", description="Init scaling rule.")
    stable_gamma: int = Field(16, description="Gamma of the 'stable' scaling.")


class KasaSection(_Sub):
    """peft.KasaConfig: KaSA adds a trainable diagonal (r values) per layer and truncates the base."""

    beta: float = Field(1e-4, ge=0, description="Weight of the L2 penalty on the diagonal (LoraModel._get_kasa_loss).")
    gamma: float = Field(1e-3, ge=0, description="Weight of the orthogonality penalty (LoraModel._get_kasa_loss).")


class BdLoraSection(_Sub):
    """peft.BdLoraConfig: block-diagonal A or B for sharded multi-LoRA serving."""

    target_modules_bd_a: list[Name] | None = Field(
        None, description="Modules whose A is block-diagonal (substring of the module name).")
    target_modules_bd_b: list[Name] | None = Field(
        None, description="Modules whose B is block-diagonal (substring of the module name).")
    nblocks: int = Field(1, ge=1, description="Blocks per block-diagonal matrix (the serving shard count).")
    match_strict: bool = Field(True, description="Every adapted module must match one of the two lists.")

    @model_validator(mode="after")
    def _no_overlap(self) -> BdLoraSection:
        both = sorted(set(self.target_modules_bd_a or []) & set(self.target_modules_bd_b or []))
        if both:
            raise PydanticCustomError("value_error", "{names} in both target_modules_bd_a and target_modules_bd_b "
                                      "(PEFT refuses this)", {"names": ", ".join(both)})
        return self


class MonteCloraSection(_Sub):
    """peft.MontecloraConfig: Monte Carlo sampling on top of the adapters."""

    num_samples: int = Field(8, gt=0, description="Monte Carlo samples per forward pass.")
    use_entropy: bool = Field(False, description="Add the entropy regulariser.")
    dirichlet_prior: float = Field(0.1, gt=0, description="Dirichlet concentration of the expert weights.")
    sample_scaler: float = Field(1e-4, description="Scale of the sampled perturbations.")
    kl_loss_weight: float = Field(1e-5, description="Weight of the KL term.")
    buffer_size: int = Field(150, gt=0, description="Size of the sampler's buffer.")


class ArrowSection(_Sub):
    """peft.ArrowConfig: Arrow routing over already trained adapters (peft's create_arrow_model)."""

    top_k: int = Field(3, gt=0, description="Adapters combined per token.")
    router_temperature: float = Field(1.0, gt=0, description="Softmax temperature of the router.")
    use_gks: bool = Field(False, description="GenKnowSub: subtract general-knowledge adapters.")
    rng_seed: int | None = Field(None, description="Seed of the router's sampling.")


class VeloraSection(_Sub):
    """peft.VeloraConfig: compressed activations for the A projection's backward."""

    num_groups: int = Field(64, gt=0, description="Feature groups the input is split into before compression.")
    scale: float = Field(1.0, gt=0, description="Scale of the reconstructed activations.")
    init_type: Literal["batch_average", "batch_average_once", "random"] = Field(
        "batch_average", description="How the projection is initialised.")


class RuntimeSection(_Sub):
    """peft.LoraRuntimeConfig: run-time only, never saved with the adapter."""

    ephemeral_gpu_offload: bool = Field(False, description="Copy CPU-offloaded data to the GPU for DoRA's init.")


# Which nested section each LoraSection field holds, and the PEFT dataclass it mirrors.
SECTIONS: dict[str, tuple[type[_Sub], str]] = {
    "loftq_config": (LoftQSection, "LoftQConfig"),
    "eva_config": (EvaSection, "EvaConfig"),
    "corda_config": (CordaSection, "CordaConfig"),
    "lora_ga_config": (LoraGASection, "LoraGAConfig"),
    "kasa_config": (KasaSection, "KasaConfig"),
    "use_bdlora": (BdLoraSection, "BdLoraConfig"),
    "monteclora_config": (MonteCloraSection, "MontecloraConfig"),
    "arrow_config": (ArrowSection, "ArrowConfig"),
    "velora_config": (VeloraSection, "VeloraConfig"),
    "runtime_config": (RuntimeSection, "LoraRuntimeConfig"),
}

# PeftConfig / LoraConfig fields the native schema does not take, each with the reason.
REFUSED_FIELDS: dict[str, str] = {
    "peft_type": "always LORA: loraplan plans LoRA adapters (QLoRA is LoRA on a 4-bit base)",
    "base_model_name_or_path": "set by the top-level `base_model`",
    "auto_mapping": "written by PEFT's save_pretrained from the model class",
    "peft_version": "filled in by PEFT itself when the adapter is saved",
    "inference_mode": "loraplan plans training; a trained adapter is loaded with PeftModel.from_pretrained",
}

