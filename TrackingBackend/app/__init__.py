"""ETVR Backend: eye tracking for VR headsets with DIY near-infrared eye cameras."""

__version__ = "0.1.0"
