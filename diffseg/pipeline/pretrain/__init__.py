"""Pre-training of the built-in `mini` model on the demo world (issue 12).

config (architecture and recipe) -> data (rendered images, captions) -> vae (phase 1) ->
unet (phase 2: U-Net + text encoder) -> run (orchestration, checkpoints, export).
"""
