"""Data: discover layouts, load images safely, split, transform, stream batches."""

from .discover import Discovered, ImageSet, discover, list_images
from .load import SkipLog, load_image
from .split import stratified_split
from .transforms import Preprocess

__all__ = ["Discovered", "ImageSet", "Preprocess", "SkipLog", "discover", "list_images", "load_image", "stratified_split"]
