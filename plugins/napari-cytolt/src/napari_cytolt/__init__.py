"""napari-cytolt: review cytolt detections in napari."""

__version__ = "0.1.0"
