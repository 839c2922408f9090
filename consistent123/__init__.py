"""Consistent123: single image -> consistent textured 3D asset with 3D then blended 2D/3D diffusion priors."""

__version__ = "0.1.0"
