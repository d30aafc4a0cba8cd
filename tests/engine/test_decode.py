"""Decoding to the fingerprint rate: chunking and cuts never change the samples."""

import numpy as np
import pytest
from citywok.matcher import synth
from citywok.matcher.engine.decode import DecodeError, decode, iter_pcm


@pytest.fixture(scope="module")
def mp3() -> bytes:
    """Compressed audio at another rate: small decoded frames, downmixed and resampled."""
    return synth.encode(synth.episode(11, 40, 22050), 22050, "mp3", 64000)


def test_chunks_join_to_the_whole_decode(mp3):
    whole = decode(mp3, 8000)
    assert abs(whole.size / 8000 - 40) < 0.2
    for chunk_seconds in (0.3, 7.7, 30.0, 100.0):
        chunks = list(iter_pcm(mp3, 8000, chunk_seconds=chunk_seconds))
        assert np.array_equal(np.concatenate(chunks), whole), chunk_seconds
        assert all(c.dtype == np.float32 for c in chunks)
        assert all(c.size >= chunk_seconds * 8000 for c in chunks[:-1]), chunk_seconds


def test_a_cut_is_a_prefix_of_the_whole_decode(mp3):
    whole = decode(mp3, 8000)
    for seconds in (0.5, 3.3, 17.0):
        cut = decode(mp3, 8000, max_seconds=seconds)
        assert cut.size == int(seconds * 8000)
        assert np.array_equal(cut, whole[: cut.size]), seconds
    assert np.array_equal(decode(mp3, 8000, max_seconds=60), whole)
    assert decode(mp3, 8000, max_seconds=0).size == 0


def test_what_is_not_audio_is_a_clear_error(tmp_path):
    with pytest.raises(DecodeError, match="not a readable audio or video file"):
        decode(b"this is not audio" * 100)
    with pytest.raises(DecodeError, match="no such file"):
        decode(str(tmp_path / "missing.mp3"))
