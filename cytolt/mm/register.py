"""Import every registration module so that ``import cytolt.mm`` fills mmdet's registries."""

# Registration modules are added here as their components land (losses, samplers, transforms, hooks).
