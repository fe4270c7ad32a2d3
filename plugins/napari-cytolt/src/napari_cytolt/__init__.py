"""napari-cytolt: review cytolt detections in napari.

The contributions (reader, review widget, writers, sample data) are declared in ``napari.yaml`` and live in
``_reader.py``, ``_widget.py``, ``_writer.py`` and ``_sample_data.py``; they wrap :mod:`cytolt.review` and
:mod:`cytolt.store`, which need no napari. Importing this package imports nothing else.
"""

__version__ = "0.1.0"
