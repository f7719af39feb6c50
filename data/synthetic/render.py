"""Render a scene to frames (uint8 [T,H,W,3]) and mono audio (float32 [n]); numpy, vectorised over frames."""
from __future__ import annotations

import numpy as np

from data.synthetic import vocab
from data.synthetic.scenes import Scene

_TIMBRE_PARTIALS = {  # (frequency ratio, amplitude)
    "sine": ((1.0, 1.0),),
    "odd": ((1.0, 1.0), (3.0, 1 / 3), (5.0, 1 / 5), (7.0, 1 / 7)),
    "saw": ((1.0, 1.0), (2.0, 1 / 2), (3.0, 1 / 3), (4.0, 1 / 4), (5.0, 1 / 5)),
    "bell": ((1.0, 1.0), (2.76, 0.6), (5.40, 0.4)),
}


def shape_mask(shape: int, dx: np.ndarray, dy: np.ndarray, r: np.ndarray | float) -> np.ndarray:
    """Boolean mask of a vocabulary shape centred at dx = dy = 0 with radius r (same units)."""
    ax, ay = np.abs(dx), np.abs(dy)
    name = vocab.SHAPES[shape]
    if name == "disk":
        return dx * dx + dy * dy <= r * r
    if name == "square":
        return np.maximum(ax, ay) <= 0.8 * r
    if name == "triangle":  # apex up (image y grows downwards)
        return (dy <= 0.7 * r) & (ax <= (dy + r) * 0.6)
    if name == "plus":
        return ((ax <= 0.3 * r) & (ay <= r)) | ((ay <= 0.3 * r) & (ax <= r))
    if name == "ring":
        d2 = dx * dx + dy * dy
        return (d2 <= r * r) & (d2 >= (0.55 * r) ** 2)
    if name == "diamond":
        return ax + ay <= r
    if name == "bar":
        return (ax <= r) & (ay <= 0.35 * r)
    if name == "cross":
        return ((np.abs(dx - dy) <= 0.35 * r) | (np.abs(dx + dy) <= 0.35 * r)) & (np.maximum(ax, ay) <= 0.8 * r)
    raise ValueError(shape)


def render_video(scene: Scene, size: int, fps: float, n_frames: int, rng: np.random.Generator) -> np.ndarray:
    t = (np.arange(n_frames) / fps).astype(np.float32)
    g = ((np.arange(size) + 0.5) / size).astype(np.float32)
    yy, xx = np.meshgrid(g, g, indexing="ij")
    bg = scene.bg
    d = np.cos(bg["angle"]) * (xx - 0.5) + np.sin(bg["angle"]) * (yy - 0.5) + 0.5
    base = bg["a"][None, None] * (1 - d[..., None]) + bg["b"][None, None] * d[..., None]
    frames = np.broadcast_to(base, (n_frames, size, size, 3)).astype(np.float32)
    for theta, f, phi, speed, colour in bg["gratings"]:
        u = np.cos(theta) * xx + np.sin(theta) * yy
        wave = np.sin(2 * np.pi * (f * u[None] + speed * t[:, None, None]) + phi)
        frames = frames + (0.5 * bg["texture"]) * wave[..., None] * colour.astype(np.float32)
    for shape, colour, cx, cy, r in scene.clutter:
        m = shape_mask(shape, xx - cx, yy - cy, r)
        frames[:, m] = np.asarray(vocab.CLUTTER_GREY, np.float32)
    for ev in scene.events:
        if ev.vis is None:
            continue
        idx = np.nonzero((t >= ev.t0) & (t < ev.t1))[0]
        if idx.size == 0:
            continue
        shape, colour, motion = vocab.VISUAL[ev.vis]
        osc = np.sin(2 * np.pi * ev.freq * t[idx] + ev.phase)
        cx = np.full(idx.size, ev.x, np.float32)
        cy = np.full(idx.size, ev.y, np.float32)
        r = np.full(idx.size, ev.size, np.float32)
        name = vocab.MOTIONS[motion]
        if name == "sway":
            cx = cx + ev.amp * osc
        elif name == "bob":
            cy = cy + ev.amp * osc
        elif name == "orbit":
            cx = cx + ev.amp * osc
            cy = cy + ev.amp * np.cos(2 * np.pi * ev.freq * t[idx] + ev.phase)
        else:  # zoom
            r = r * (1 + 0.3 * osc)
        m = shape_mask(shape, xx[None] - cx[:, None, None], yy[None] - cy[:, None, None], r[:, None, None])
        sub = frames[idx]
        sub[m] = np.asarray(vocab.COLOURS[colour], np.float32) * ev.bright
        frames[idx] = sub
    if scene.pixel_noise > 0:
        frames = frames + rng.normal(0, scene.pixel_noise, frames.shape).astype(np.float32)
    return (np.clip(frames, 0, 1) * 255 + 0.5).astype(np.uint8)


def _tone(freq: float, timbre: int, n: int, rate: int) -> np.ndarray:
    tt = np.arange(n) / rate
    out = np.zeros(n)
    total = 0.0
    for ratio, a in _TIMBRE_PARTIALS[vocab.TIMBRES[timbre]]:
        if freq * ratio < 0.45 * rate:
            out += a * np.sin(2 * np.pi * freq * ratio * tt)
            total += a
    return out / max(total, 1e-6)


def render_audio(scene: Scene, rate: int, n_samples: int, rng: np.random.Generator) -> np.ndarray:
    x = np.zeros(n_samples)
    ramp = max(1, int(0.01 * rate))
    for ev in scene.events:
        if ev.aud is None:
            continue
        s0, s1 = int(round(ev.t0 * rate)), min(n_samples, int(round(ev.t1 * rate)))
        n = s1 - s0
        if n <= 0:
            continue
        p, timbre, rhythm = vocab.AUDIO[ev.aud]
        tone = _tone(vocab.PITCHES[p] * ev.pitch, timbre, n, rate)
        env = np.ones(n)
        k = min(ramp, n // 2)
        if k > 0:
            env[:k] = np.linspace(0, 1, k)
            env[-k:] = np.linspace(1, 0, k)
        pps = vocab.RHYTHMS[rhythm]
        if pps > 0:
            tt = np.arange(n) / rate
            env *= np.clip(0.5 + 2.0 * np.sin(2 * np.pi * (pps * tt + ev.pulse_phase)), 0, 1)
        x[s0:s1] += 0.3 * ev.gain * tone * env
    freq, timbre, amp = scene.hum
    if amp > 0:
        x += amp * _tone(freq, timbre, n_samples, rate)
    if scene.noise > 0:
        white = rng.normal(0, 1, n_samples)
        spec = np.fft.rfft(white)
        f = np.fft.rfftfreq(n_samples, 1 / rate)
        fc = 200 + (1 - scene.noise_smooth) * 0.5 * rate  # brighter or darker noise
        noise = np.fft.irfft(spec / np.sqrt(1 + (f / fc) ** 2), n_samples)
        x += scene.noise * noise / (noise.std() + 1e-9)
    peak = np.abs(x).max()
    if peak > 0.95:
        x *= 0.95 / peak
    return x.astype(np.float32)
