"""CityWok: which episode, and where in it, is this clip from?"""

__version__ = "0.1.0"
