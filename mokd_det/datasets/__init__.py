from .seeded_sampler import (SeededAugmentationSampler, SeededIndex,
                             SeededPipeline, sample_seed)
from .checks import (DatasetCheckError, check_coco_dataset,
                     check_detection_data)
from .shapes import (CLASSES, ShapesConfig, generate_coco_detection,
                     generate_imagenet_classification,
                     render_classification_image, render_detection_image)

__all__ = [
    'DatasetCheckError', 'check_coco_dataset', 'check_detection_data',
    'SeededAugmentationSampler', 'SeededIndex', 'SeededPipeline',
    'sample_seed', 'CLASSES', 'ShapesConfig', 'generate_coco_detection',
    'generate_imagenet_classification', 'render_classification_image',
    'render_detection_image'
]
