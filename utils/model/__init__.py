"""The GPT model and its presets."""

from utils.model.gpt import GPT, PRESETS, GPTConfig, ParameterCounts, config_for_preset, count_parameters

__all__ = ["GPT", "GPTConfig", "PRESETS", "ParameterCounts", "config_for_preset", "count_parameters"]
