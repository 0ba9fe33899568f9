"""Axolotl's top-level config keys, so unknown ones can be told apart from misspelt ones.

Axolotl validates a config with pydantic models whose extra keys are silently dropped, so a
misspelt `lora_alpah` is simply ignored there. These tables let loraplan say so. They were
taken from Axolotl's schema (src/axolotl/utils/schemas/: config.py `AxolotlInputConfig` and the
mixins it inherits: model.py, peft.py, training.py, integrations.py, multimodal.py,
deprecated.py), from src/axolotl/loaders/adapter.py (keys read through `cfg.` only), and from
the plugin arguments the example configs use (integrations/*/args.py: liger, kernels, ...).
"""

from __future__ import annotations

# utils/schemas/peft.py: LoraConfig + ReLoRAConfig, and loaders/adapter.py `_build_lora_config_kwargs`
# (lora_rank_pattern / lora_alpha_pattern / lora_exclude_modules are read there from the cfg).
ADAPTER_KEYS = frozenset({
    "adapter", "lora_model_dir", "load_in_4bit", "load_in_8bit",
    "lora_r", "lora_alpha", "lora_dropout", "lora_fan_in_fan_out",
    "lora_target_modules", "lora_target_parameters", "lora_target_linear", "lora_modules_to_save",
    "lora_rank_pattern", "lora_alpha_pattern", "lora_exclude_modules",
    "peft_layers_to_transform", "peft_layers_pattern", "peft", "peft_use_dora", "peft_use_rslora",
    "peft_layer_replication", "peft_init_lora_weights", "peft_trainable_token_indices",
    "peft_ensure_weight_tying", "peft_autocast_adapter_dtype",
    "qlora_sharded_model_loading", "lora_on_cpu", "gptq", "gptq_disable_exllama", "bnb_config_kwargs",
    "loraplus_lr_ratio", "loraplus_lr_embedding", "merge_lora", "merge_method",
    "relora", "relora_prune_ratio", "relora_prune_method", "relora_cpu_offload",
    # older releases (still in the archived examples)
    "gptq_groupsize", "gptq_model_v1", "relora_steps", "relora_warmup_steps", "relora_anneal_steps",
})

# Keys outside the adapter block that loraplan reads (dtype, model, training shape).
PLANNED_KEYS = frozenset({
    "base_model", "base_model_config", "model_type", "type_of_model", "trust_remote_code",
    "bf16", "fp16", "bfloat16", "float16", "float32", "torch_dtype",
    "sequence_len", "micro_batch_size", "gradient_accumulation_steps", "batch_size",
    "gradient_checkpointing", "optimizer", "attn_implementation",
    "flash_attention", "sdp_attention", "flex_attention", "eager_attention", "xformers_attention",
    "s2_attention", "sage_attention", "model_quantization_config", "model_quantization_config_kwargs",
})

# utils/schemas/config.py AxolotlInputConfig's own fields.
_CONFIG = frozenset({
    "strict", "resume_from_checkpoint", "auto_resume_from_checkpoints", "resize_token_embeddings_to_32x",
    "mean_resizing_embeddings", "shrink_embeddings", "embeddings_skip_upcast", "reinit_weights",
    "trainer_cls", "rl", "trl", "vllm", "ebft", "qat", "quantization", "reward_model", "dynamic_checkpoint",
    "process_reward_model", "center_rewards_coefficient", "num_labels", "dpo_use_weighting",
    "dpo_label_smoothing", "precompute_ref_log_probs", "dpo_use_liger_kernel", "dpo_padding_free",
    "dpo_loss_type", "dpo_loss_weights", "datasets", "test_datasets", "shuffle_merged_datasets",
    "shuffle_before_merging_datasets", "dataset_prepared_path", "dataset_shard_num", "dataset_shard_idx",
    "skip_prepare_dataset", "num_dataset_shards_to_save", "pretraining_dataset", "dataset_processes",
    "dataset_num_proc", "dataset_exact_deduplication", "dataset_keep_in_memory", "dataloader_pin_memory",
    "dataloader_num_workers", "dataloader_prefetch_factor", "dataloader_drop_last", "accelerator_config",
    "remove_unused_columns", "push_dataset_to_hub", "hf_use_auth_token", "device", "device_map",
    "world_size", "local_rank", "ddp", "seed", "ddp_timeout", "ddp_bucket_cap_mb", "ddp_broadcast_buffers",
    "ddp_find_unused_parameters", "do_causal_lm_eval", "eval_causal_lm_metrics", "do_bench_eval",
    "bench_dataset", "bench_split", "metric_for_best_model", "greater_is_better", "loss_watchdog_threshold",
    "loss_watchdog_patience", "gc_steps", "fp8", "fp8_enable_fsdp_float8_all_gather", "tf32",
    "gradient_checkpointing_kwargs", "activation_offloading", "layer_offloading", "freeze_mm_modules",
    "unfrozen_parameters", "excess_length_strategy", "eval_sequence_len", "min_sample_len",
    "max_prompt_len", "sample_packing", "sample_packing_group_size", "sample_packing_bin_size",
    "sample_packing_sequentially", "sample_packing_mp_start_method", "eval_sample_packing",
    "pad_to_sequence_len", "pad_to_multiple_of", "curriculum_sampling", "multipack_real_batches",
    "batch_flattening", "use_pose", "pose_split_on_token_ids", "pose_max_context_len", "pose_num_chunks",
    "pretrain_multipack_buffer_size", "pretrain_multipack_attn", "pretraining_sample_concatenation",
    "streaming", "streaming_multipack_buffer_size", "flex_attn_compile_kwargs", "flash_attn_cross_entropy",
    "flash_attn_fuse_qkv", "flash_attn_fuse_mlp", "flash_optimum", "gemma4_hybrid_attn_impl",
    "experts_implementation", "quantize_moe_experts", "scaling_softmax", "scaling_softmax_factor",
    "scaling_softmax_bias", "lora_mlp_kernel", "lora_qkv_kernel", "lora_o_kernel", "lora_embedding_kernel",
    "chunked_cross_entropy", "chunked_cross_entropy_num_chunks", "use_eaft", "eaft_alpha", "eaft_k",
    "tiled_mlp", "tiled_mlp_num_shards", "tiled_mlp_use_original_mlp", "llama4_linearized_experts",
    "deepspeed", "deepcompile", "fsdp", "fsdp_config", "fsdp_version", "fsdp_final_state_dict_type",
    "val_set_size", "dp_shard_size", "dp_replicate_size", "sequence_parallel_degree",
    "context_parallel_size", "heads_k_stride", "ring_attn_func", "tensor_parallel_size", "special_tokens",
    "tokens", "added_tokens_overrides", "torch_compile", "torch_compile_backend", "torch_compile_mode",
    "max_steps", "warmup_steps", "warmup_ratio", "eval_steps", "evals_per_epoch", "eval_strategy",
    "save_steps", "saves_per_epoch", "save_strategy", "save_total_limit", "save_first_step",
    "logging_steps", "early_stopping_patience", "load_best_model_at_end", "save_only_model",
    "use_tensorboard", "profiler_steps", "profiler_steps_start", "include_tokens_per_second",
    "include_tkps", "neftune_noise_alpha", "orpo_alpha", "simpo_gamma", "cpo_alpha",
    "kto_desirable_weight", "kto_undesirable_weight", "rl_beta", "max_memory", "gpu_memory_limit",
    "low_cpu_mem_usage", "chat_template", "chat_template_jinja", "chat_template_kwargs", "eot_tokens",
    "default_system_message", "fix_untrained_tokens", "is_preprocess", "preprocess_iterable",
    "total_num_tokens", "total_supervised_tokens", "sample_packing_eff_est", "axolotl_config_path",
    "is_falcon_derived_model", "is_llama_derived_model", "is_mistral_derived_model",
    "is_qwen_derived_model", "plugins", "generate_samples", "num_generation_samples",
    "generation_max_new_tokens", "generation_temperature", "generation_top_p", "generation_top_k",
    "generation_prompt_ratio", "generation_do_sample", "group_by_length",
    # set by Axolotl itself, seen in dumped configs
    "model_config_type", "capabilities", "env_capabilities", "inference", "merge_lora",
})

# model.py (ModelInputConfig, ModelOutputConfig), deprecated.py (incl. the alias names), training.py
# (HyperparametersConfig, JaggedLRConfig), integrations.py, multimodal.py.
_MIXINS = frozenset({
    "cls_model_config", "tokenizer_config", "tokenizer_use_fast", "tokenizer_legacy",
    "tokenizer_use_mistral_common", "tokenizer_type", "processor_type", "processor_kwargs",
    "tokenizer_save_jinja_files", "experimental_skip_move_to_device", "use_kernels", "use_onebitllms",
    "output_dir", "hub_model_id", "hub_strategy", "hub_revision", "save_safetensors",
    "max_packed_sequence_len", "rope_scaling", "noisy_embedding_alpha", "dpo_beta", "evaluation_strategy",
    "eval_table_size", "eval_max_new_tokens", "dpo_use_logits_to_keep", "dpo_generate_during_eval",
    "dpo_norm_loss", "rpo_alpha", "flash_attn_rms_norm",
    "model_config", "overrides_of_model_config", "model_kwargs", "overrides_of_model_kwargs",
    "model_revision", "revision_of_model",
    "eval_batch_size", "auto_find_batch_size", "train_on_inputs", "learning_rate", "embedding_lr",
    "embedding_lr_scale", "weight_decay", "optim_args", "optim_target_modules", "torchdistx_path",
    "lr_scheduler", "lr_scheduler_kwargs", "lr_quadratic_warmup", "cosine_min_lr_ratio",
    "cosine_constant_lr_ratio", "lr_div_factor", "lr_groups", "adam_epsilon", "adam_epsilon2",
    "adam_beta1", "adam_beta2", "adam_beta3", "dion_lr", "dion_momentum", "dion_rank_fraction",
    "dion_rank_multiple_of", "qgalore_rank", "qgalore_update_proj_gap", "qgalore_scale",
    "qgalore_proj_type", "qgalore_proj_quant", "qgalore_proj_bits", "qgalore_proj_group_size",
    "qgalore_cos_threshold", "qgalore_gamma_proj", "qgalore_queue_size", "max_grad_norm", "num_epochs",
    "jagged_restart_steps", "jagged_restart_warmup_steps", "jagged_restart_anneal_steps",
    "use_mlflow", "mlflow_tracking_uri", "mlflow_experiment_name", "mlflow_run_name",
    "hf_mlflow_log_artifacts", "lisa_n_layers", "lisa_step_interval", "lisa_layers_attribute",
    "use_wandb", "wandb_name", "wandb_run_id", "wandb_mode", "wandb_project", "wandb_entity",
    "wandb_watch", "wandb_log_model", "use_comet", "comet_api_key", "comet_workspace",
    "comet_project_name", "comet_experiment_key", "comet_mode", "comet_online", "comet_experiment_config",
    "gradio_title", "gradio_share", "gradio_server_name", "gradio_server_port", "gradio_max_new_tokens",
    "gradio_temperature", "use_ray", "ray_run_name", "ray_num_workers", "resources_per_worker",
    "use_otel_metrics", "otel_metrics_host", "otel_metrics_port", "use_trackio", "trackio_project_name",
    "trackio_run_name", "trackio_space_id", "image_size", "image_resize_algorithm",
    # keys of recent releases and plugins, as used by the example configs
    "adam_eps", "expert_parallel_size", "expert_parallel_num_nvl_bytes", "expert_parallel_token_capacity",
    "dsv4_fp4_grouped_mode", "use_dsv4_kernels", "use_glm_dsa_kernels", "fused_attn_kernel",
    "nvfp4_merge_aware", "cut_cross_entropy", "use_scattermoe", "use_sonicmoe",
    "liger_rope", "liger_rms_norm", "liger_rms_norm_gated", "liger_layer_norm", "liger_swiglu",
    "liger_glu_activation", "liger_cross_entropy", "liger_fused_linear_cross_entropy",
    "liger_use_token_scaling", "liger_dyt", "use_swanlab", "swanlab_project", "swanlab_experiment_name",
    "swanlab_description", "swanlab_mode", "swanlab_workspace", "swanlab_api_key", "swanlab_log_model",
    "swanlab_log_completions", "swanlab_completion_log_interval", "swanlab_completion_max_buffer",
    "swanlab_web_host", "swanlab_api_host", "swanlab_lark_webhook_url", "swanlab_lark_secret",
    "spectrum_top_fraction", "spectrum_model_name", "lm_eval_tasks", "lm_eval_batch_size",
    "lm_eval_post_train", "lm_eval_model", "grokfast_alpha", "grokfast_lamb", "llmcompressor",
    "kd_trainer", "kd_ce_alpha", "kd_alpha", "kd_temperature", "kd_zscore_base_temp",
    "kd_top_k_before_softmax", "kd_normalize_topk",
})

AXOLOTL_KEYS = ADAPTER_KEYS | PLANNED_KEYS | _CONFIG | _MIXINS

# Native loraplan top-level keys: a config that has only these is not an Axolotl one.
_NATIVE_TOP = frozenset({"base_model", "adapter", "architecture", "model_class", "dtype", "lora",
                         "quantization", "training"})

# A key here means "this is an Axolotl config" (used by load.detect_dialect).
MARKER_KEYS = frozenset(
    (ADAPTER_KEYS | PLANNED_KEYS | {"datasets", "learning_rate", "num_epochs", "output_dir", "lr_scheduler"})
    - _NATIVE_TOP
)

# `peft:` sub-block (peft.py PeftConfig) and its `loftq_config` (LoftQConfig reads loftq_bits only).
PEFT_BLOCK_KEYS = frozenset({"loftq_config", "backend", "weight_dtype", "group_size"})
# Keys of other releases that 0.19.0's PeftConfig does not keep (pydantic drops them).
PEFT_BLOCK_DROPPED = frozenset({"backend", "weight_dtype", "group_size"})

# Keys loraplan knows (other releases read them) that Axolotl 0.19.0's schema drops: no field of
# AxolotlInputConfig holds them, so pydantic discards them -> what is lost.
DROPPED_KEYS: dict[str, str] = {
    "lora_exclude_modules": "no module is excluded from the adapter (load_lora reads it with getattr, which "
    "finds nothing once the schema dropped it)",
    "gptq_groupsize": "it has no effect (a key of older releases)",
    "gptq_model_v1": "it has no effect (a key of older releases)",
    "gptq_disable_exllama": "it has no effect on loading",
    "relora_steps": "it does not set ReLoRA's restart interval (0.19.0 reads jagged_restart_steps)",
    "relora_warmup_steps": "it has no effect (0.19.0 reads jagged_restart_warmup_steps)",
    "relora_anneal_steps": "it has no effect (0.19.0 reads jagged_restart_anneal_steps)",
    "adam_eps": "it does not set Adam's epsilon (0.19.0 reads adam_epsilon)",
}

# Keys whose use Axolotl 0.19.0 refuses (schemas/deprecated.py, validation.py): key -> (refused when
# set at all, rather than only when truthy; Axolotl's message).
REMOVED_KEYS: dict[str, tuple[bool, str]] = {
    "max_packed_sequence_len": (False, "`max_packed_sequence_len` is no longer supported"),
    "rope_scaling": (False, "`rope_scaling` is no longer supported, it should now be be a key under `model_config`"),
    "s2_attention": (False, "`s2_attention` (shifted-sparse attention) is no longer supported."),
    "flash_attn_rms_norm": (False, "`flash_attn_rms_norm` is no longer supported."),
    "dpo_use_logits_to_keep": (True, "`dpo_use_logits_to_keep` is no longer supported, it has been removed in "
                               "TRL >= 0.29.0"),
    "dpo_generate_during_eval": (True, "`dpo_generate_during_eval` is no longer supported, it has been removed "
                                 "in TRL >= 0.29.0"),
    "dpo_norm_loss": (True, "`dpo_norm_loss` is no longer supported, due to breaking changes in TRL >= 0.29.0"),
    "rpo_alpha": (True, "`rpo_alpha` has been deprecated in TRL >= 0.29.0, and now requires passing multiple loss "
                  "types, which is not yet supported by Axolotl."),
    **{k: (False, f"`{k}` has been removed. Please use `lora_mlp_kernel`, `lora_qkv_kernel`, `lora_o_kernel` "
           "instead.") for k in ("unsloth_cross_entropy_loss", "unsloth_lora_mlp", "unsloth_lora_qkv",
                                 "unsloth_lora_o", "unsloth_rms_norm", "unsloth_rope")},
}
LOFTQ_KEYS = frozenset({"loftq_bits"})

# PEFT / loraplan names people paste into Axolotl configs, and the Axolotl key that means it.
FOREIGN_NAMES: dict[str, str] = {
    "r": "lora_r", "rank": "lora_r", "lora_rank": "lora_r", "alpha": "lora_alpha",
    "dropout": "lora_dropout", "target_modules": "lora_target_modules",
    "target_parameters": "lora_target_parameters", "modules_to_save": "lora_modules_to_save",
    "fan_in_fan_out": "lora_fan_in_fan_out", "layers_to_transform": "peft_layers_to_transform",
    "layers_pattern": "peft_layers_pattern", "use_dora": "peft_use_dora", "use_rslora": "peft_use_rslora",
    "init_lora_weights": "peft_init_lora_weights", "rank_pattern": "lora_rank_pattern",
    "alpha_pattern": "lora_alpha_pattern", "exclude_modules": "lora_exclude_modules",
    "bnb_4bit_quant_type": "bnb_config_kwargs", "bnb_4bit_use_double_quant": "bnb_config_kwargs",
    "bnb_4bit_compute_dtype": "bnb_config_kwargs", "bnb_4bit_quant_storage": "bnb_config_kwargs",
    "lora_layers_to_transform": "peft_layers_to_transform", "lora_layers_pattern": "peft_layers_pattern",
    "lora_use_dora": "peft_use_dora", "use_rs_lora": "peft_use_rslora", "lora_use_rslora": "peft_use_rslora",
}

# An unknown key with one of these prefixes is an adapter key Axolotl does not know.
ADAPTER_PREFIXES = ("lora_", "peft_", "load_in_", "bnb_", "qlora", "loraplus_", "relora", "adapter")
