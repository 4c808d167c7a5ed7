"""diffseg: DIFF + IPKL semantic segmentation from cached frozen Stable Diffusion features."""

__version__ = "0.1.0"
