"""Import every registration module so that ``import cytolt.mm`` fills mmdet's registries."""

from cytolt.mm import transforms  # noqa: F401
