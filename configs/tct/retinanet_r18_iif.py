# RetinaNet R18 with IIF (Alexandridis et al., IEEE TIP 2023) on the softmax cross-entropy head of retinanet_r18_ce
# (the paper scales softmax logits): each class logit times iif_c = log(N / n_c), N training images, n_c of them
# with class c, at training and test; the background column keeps factor 1. On the benchmark's 420 training
# patches the factors run from 0.31 (intermediate, in 73% of them) to 3.96 (agc, in 8). A class in every training
# image would get factor 0 and is refused: use iif_variant="smooth" (log((N + 1) / (n_c + 1)) + 1 >= 1) then.
_base_ = "./retinanet_r18_ce.py"
model = dict(
    bbox_head=dict(
        type="IIFRetinaHead",
        train_ann_file="data/tct/annotations_train.json",
        iif_variant="raw",
        iif_counts="images",
    )
)
