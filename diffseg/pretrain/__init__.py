"""Pre-training of the built-in `mini` model on the demo world (`diffseg pretrain`).

A package of its own, not part of diffseg.pipeline (the frozen side that extraction runs): it
trains a diffusion model, using the pipeline's components, tokenizer and prompts.

config (architecture and recipe) -> data (rendered images, captions) -> vae (phase 1) ->
unet (phase 2: U-Net + text encoder) -> run (orchestration, checkpoints, export).
"""
