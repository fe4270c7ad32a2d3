"""cytolt: rare abnormal cell detection in cervical cytology WSIs and long-tailed detection."""

__version__ = "0.1.0"
