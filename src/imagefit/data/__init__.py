"""Data: discover layouts, load images safely, split, transform, stream batches; prepare a run's sets."""

from .discover import Discovered, ImageSet, discover, list_images
from .duplicates import Duplicates, find_duplicates
from .load import SkipLog, load_image
from .prepare import Prepared, out_inside_data, prepare, prepare_data
from .split import stratified_split
from .transforms import Preprocess

__all__ = [
    "Discovered",
    "Duplicates",
    "ImageSet",
    "Prepared",
    "Preprocess",
    "SkipLog",
    "discover",
    "find_duplicates",
    "list_images",
    "load_image",
    "out_inside_data",
    "prepare",
    "prepare_data",
    "stratified_split",
]
