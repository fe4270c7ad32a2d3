"""Import every registration module so that ``import cytolt.mm`` fills mmdet's registries."""

from cytolt.mm import hooks, losses, lvis, metrics, polarmask, progress, samplers, transforms  # noqa: F401
