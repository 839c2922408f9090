"""Mask, recentre, depth and caption one input image."""
