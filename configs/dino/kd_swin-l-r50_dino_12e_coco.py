# Vanilla KD: the pair's query term summed with the task losses, DINO's AdamW.
_base_ = ['../_base_/pairs/dino_swin-l-r50_coco.py']
