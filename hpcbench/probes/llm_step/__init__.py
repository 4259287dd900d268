"""llm_step: an LLM training-step canary, tokens/s and MFU of a Llama-style decoder per GPU and under DDP.

probe.py: the probe (modes, measurements); flops.py: shapes, presets, the FLOP and MFU count and the
peak table (pure); calc.py: the loss's sanity, percentiles, the slowest rank (pure); model.py: the
decoder in torch; train.py: the timed loop; ddp.py: one rank of the ddp mode.
"""
