"""What a GPU run depends on: CUDA end to end, and the GPU seams checked on a CPU."""
