"""Training the zoo: the training-time perturbations (augmentations) and the recipe loop."""
