# The ImageNet backbone every published LVIS number here starts from: torchvision's ResNet-50 IMAGENET1K_V1,
# the file mmdet's 'torchvision://resnet50' resolves to. cytolt.mm.lvis_weights reads this spec: a full-data run
# refuses to start until model.backbone.init_cfg is dict(type="Pretrained", checkpoint=<this file>) and the file's
# SHA-256 matches; the mini LVIS set sets required=False.
backbone_weights = dict(
    name="resnet50-0676ba61.pth",
    url="https://download.pytorch.org/models/resnet50-0676ba61.pth",
    # torch.hub's rule: the file name's hex part is the start of its SHA-256.
    sha256_prefix="0676ba61",
    # The full digest and size as measured on a downloaded copy and published in a public repository's experiment
    # log (found through the workplace's code search; no copy could be fetched here). The prefix above agrees.
    sha256="0676ba61b6795bbe1773cffd859882e5e297624d384b6993f7c9e683e722fb8a",
    bytes=102530333,
    version="torchvision ResNet50_Weights.IMAGENET1K_V1 (mmdet's torchvision://resnet50)",
    required=True,
)
