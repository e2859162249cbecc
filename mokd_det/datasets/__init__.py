from .shapes import (CLASSES, ShapesConfig, generate_coco_detection,
                     generate_imagenet_classification,
                     render_classification_image, render_detection_image)

__all__ = [
    'CLASSES', 'ShapesConfig', 'generate_coco_detection',
    'generate_imagenet_classification', 'render_classification_image',
    'render_detection_image'
]
