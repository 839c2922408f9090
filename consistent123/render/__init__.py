"""Pure-PyTorch and CUDA renderers, and the one camera convention."""
