"""The fingerprint engine: decode, spectrogram, peaks, landmark hashes, offset voting and the
match decision. Pure functions over numpy arrays (decoding aside, which only reads bytes it is
given); it knows nothing of how postings are stored, only the ``Catalogue`` it is asked to search.
"""
