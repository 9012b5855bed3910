"""Tensor operations threats (and training) share: warps, shifts, per-image prediction, the
corruptions and MNIST-C transforms. Stateless functions of tensors; no family lives here."""
