import numpy as np
from citywok.matcher import synth
from citywok.matcher.engine.decode import decode, iter_pcm
from citywok.matcher.engine.fingerprint import fingerprint_episode, fingerprint_pcm
from citywok.matcher.engine.landmarks import HASH_BITS
from citywok.matcher.engine.params import DEFAULT_PARAMS


def test_deterministic_and_bounded():
    x = synth.episode(3, 20, 8000)
    a, b = fingerprint_pcm(x), fingerprint_pcm(x.copy())
    assert len(a) > 20 * 40  # dense enough to survive noise
    assert np.array_equal(a.hash, b.hash) and np.array_equal(a.t, b.t)
    assert int(a.hash.max()) < (1 << HASH_BITS)
    assert np.all(np.diff(a.t.astype(np.int64)) >= 0)


def test_streaming_equals_whole_file():
    """A long file fingerprinted in small decoded chunks gives exactly the whole-file hashes."""
    wav = synth.encode(synth.episode(5, 200, 8000), 8000, "wav")
    whole = fingerprint_pcm(decode(wav, 8000))
    for chunk_seconds in (0.7, 13.3, 61.0):
        streamed, _, seconds = fingerprint_episode(iter_pcm(wav, 8000, chunk_seconds=chunk_seconds))
        assert abs(seconds - 200) < 0.01
        assert np.array_equal(streamed.hash, whole.hash)
        assert np.array_equal(streamed.t, whole.t)


def test_silence_has_no_hashes():
    assert len(fingerprint_pcm(np.zeros(8000 * 5, np.float32))) == 0


def test_params_digest_changes_with_any_parameter():
    from dataclasses import replace

    assert replace(DEFAULT_PARAMS, fanout=DEFAULT_PARAMS.fanout + 1).digest() != DEFAULT_PARAMS.digest()
    assert DEFAULT_PARAMS.from_dict(DEFAULT_PARAMS.to_dict()) == DEFAULT_PARAMS


def _float_wav(x: np.ndarray, rate: int) -> bytes:
    import io

    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="wav") as c:
        s = c.add_stream("pcm_f32le", rate=rate)
        s.layout = "mono"
        frame = av.AudioFrame.from_ndarray(x.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = rate
        for packet in [*s.encode(frame), *s.encode(None)]:
            c.mux(packet)
    return buf.getvalue()


def test_audio_already_at_the_fingerprint_rate_is_taken_as_it_is():
    """Mono float audio at 8 kHz skips the resampler and loses nothing; 16-bit audio at the same rate
    goes through it and comes out the same to 16-bit precision."""
    x = (synth.episode(8, 12, 8000) * 0.5).astype(np.float32)
    direct = decode(_float_wav(x, 8000), 8000)
    assert np.array_equal(direct, x)
    resampled = decode(synth.encode(x, 8000, "wav"), 8000)
    assert resampled.size == x.size and np.abs(resampled - x).max() < 1e-3


def test_decoded_frames_are_read_as_to_ndarray_reads_them():
    """The decoder reads frames' planes directly; it must see what PyAV's own conversion sees, for packed
    and planar formats, mono and stereo."""
    import io

    import av
    from citywok.matcher.engine.decode import _samples

    x = synth.episode(9, 3, 8000)
    stereo = np.stack([x, x[::-1].copy()]).astype(np.float32)
    for codec, fmt, layout in (("pcm_s16le", "s16", "stereo"), ("flac", "s16", "stereo"),
                               ("pcm_f32le", "flt", "mono"), ("mp3", "fltp", "stereo")):
        buf = io.BytesIO()
        with av.open(buf, "w", format="wav" if codec.startswith("pcm") else codec.replace("pcm_", "")) as c:
            s = c.add_stream(codec, rate=8000)
            s.layout = layout
            data = stereo if layout == "stereo" else stereo[:1]
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format="fltp", layout=layout)
            frame.sample_rate = 8000
            for packet in [*s.encode(frame), *s.encode(None)]:
                c.mux(packet)
        with av.open(io.BytesIO(buf.getvalue())) as c:
            frames = list(c.decode(c.streams.audio[0]))
        assert frames[0].format.name in {fmt, "fltp", "s16", "s16p", "flt"} and len(frames) > 1
        assert np.array_equal(_samples(frames), np.concatenate([f.to_ndarray() for f in frames], axis=1)), codec


def test_anchors_pair_with_the_strongest_peaks_of_their_zone_and_never_at_their_own_frequency():
    """Noise buries weak peaks: an anchor pairs with the loudest peaks of its target zone, whatever lies
    between, and a peak at the anchor's own frequency (a held note) is never its partner."""
    from dataclasses import replace

    from citywok.matcher.engine.landmarks import landmarks
    from citywok.matcher.engine.peaks import Peaks

    p = replace(DEFAULT_PARAMS, fanout=2)
    t = np.array([0, 2, 4, 6, 8, 10, 200])
    f = np.array([50, 60, 70, 50, 80, 90, 60])
    m = np.array([0, 1, 9, 20, 2, 8, 30], np.float32)  # t=6 is loudest but at the anchor's frequency
    h = landmarks(Peaks(t, f, m), p, anchors=1)  # t=200 is outside the zone
    partners = sorted(zip(((h.hash >> 6) & 127).astype(int) - 64, (h.hash & 63).astype(int), strict=True))
    assert partners == [(20, 4), (40, 10)]  # the peaks of strength 9 and 8
    assert np.all(h.t == 0)
