"""Noise for two-mic mixtures, made on the training device: spherically diffuse fields and sensor noise.

A spherically diffuse (isotropic) field at two omnidirectional mics d apart has the real coherence
gamma(f) = sin(2 pi f d / c) / (2 pi f d / c) (Cook et al., JASA 27(6), 1955). Two independent signals of one
spectrum are given that coherence by the 2x2 Cholesky factor of [[1, gamma], [gamma, 1]] applied per frequency:
X0 = N0, X1 = gamma N0 + sqrt(1 - gamma^2) N1 (Habets and Gannot, "Generating sensor signals in isotropic noise
fields", JASA 122(6), 2007). Here it is one spectrum over the whole clip, batched, with d per mixture: shaped
noise is drawn directly in the frequency domain, so a mixture's diffuse noise costs one inverse FFT.
"""
from __future__ import annotations

import torch

NOISE_KINDS = ("pink", "speech", "babble")


def diffuse_coherence(freqs: torch.Tensor, spacing: torch.Tensor, sound_speed: float) -> torch.Tensor:
    """freqs [F] in Hz, spacing [B] in metres -> gamma [B, F] = sinc(2 pi f d / c) (unnormalized sinc)."""
    # torch.sinc(x) = sin(pi x) / (pi x), so x = 2 f d / c.
    return torch.sinc(2.0 * freqs[None, :] * spacing[:, None] / sound_speed)


def coherent_spectra(spec: torch.Tensor, spacing: torch.Tensor, sr: int, sound_speed: float, T: int) -> torch.Tensor:
    """spec [B, 2, F] (the rfft over T samples of two independent signals of one spectrum), spacing [B] -> [B, 2, F]:
    mic 1 given the spherically diffuse field's coherence with mic 0 at that spacing (Cholesky factor, per bin)."""
    freqs = torch.fft.rfftfreq(T, d=1.0 / sr).to(spec.device)
    gamma = diffuse_coherence(freqs, spacing.float(), sound_speed)  # [B, F]
    mic1 = gamma * spec[:, 0] + torch.sqrt((1.0 - gamma.square()).clamp_min(0.0)) * spec[:, 1]
    return torch.stack((spec[:, 0], mic1), dim=1)


def impose_coherence(base: torch.Tensor, spacing: torch.Tensor, sr: int, sound_speed: float) -> torch.Tensor:
    """base [B, 2, T] (two independent noise signals of one spectrum per mixture), spacing [B] ->
    noise [B, 2, T] whose inter-channel coherence is that of a spherically diffuse field at that spacing."""
    T = base.shape[-1]
    return torch.fft.irfft(coherent_spectra(torch.fft.rfft(base.float(), n=T), spacing, sr, sound_speed, T), n=T)


def shaped_spectra(magnitude: torch.Tensor, generator: torch.Generator, channels: int = 2) -> torch.Tensor:
    """magnitude [B, F] (the wanted amplitude spectrum) -> [B, channels, F]: the spectra of independent Gaussian
    signals per row with that spectrum, drawn in the frequency domain (the rfft of white Gaussian noise is
    complex Gaussian per bin; the DC and Nyquist bins' imaginary parts are dropped by irfft)."""
    B, F = magnitude.shape
    parts = torch.randn(B, channels, F, 2, generator=generator, device=generator.device).to(magnitude.device)
    return torch.view_as_complex(parts) * magnitude[:, None, :]


def shaped_noise(magnitude: torch.Tensor, T: int, generator: torch.Generator) -> torch.Tensor:
    """magnitude [B, F] (F = T // 2 + 1, the wanted amplitude spectrum) -> noise [B, 2, T]: two independent
    Gaussian signals per mixture with that spectrum."""
    return torch.fft.irfft(shaped_spectra(magnitude[:, : T // 2 + 1], generator), n=T)


def tilted_magnitude(tilt: torch.Tensor, T: int, sr: int, floor_hz: float = 50.0) -> torch.Tensor:
    """tilt [N] -> [N, F]: amplitude f^(tilt / 2), i.e. power f^tilt (0 white, -1 pink, -2 brown), flat below
    floor_hz."""
    freqs = torch.fft.rfftfreq(T, d=1.0 / sr).to(tilt.device).clamp_min(floor_hz)
    return freqs[None, :].pow(tilt.float()[:, None] / 2.0)


def pink_magnitude(B: int, T: int, sr: int, device: torch.device, floor_hz: float = 50.0) -> torch.Tensor:
    """-> [B, F]: amplitude 1 / sqrt(f) (power 1/f), flat below floor_hz."""
    return tilted_magnitude(torch.full((1,), -1.0, device=device), T, sr, floor_hz).expand(B, -1)


def broadband_sources(speech: torch.Tensor, use: torch.Tensor, tilt: torch.Tensor, sr: int,
                      generator: torch.Generator) -> torch.Tensor:
    """speech [B, S, T] dry segments, use bool [B, S], tilt [B, S] -> [B, S, T]: the segments where `use` replaced
    by Gaussian noise of power spectrum f^tilt at the RMS of the segment it replaces. A steady broadband source (a
    fan, a loudspeaker playing noise) carries energy up to Nyquist at every instant, where speech has little: near
    the mic axis a model that only heard speech names it twice."""
    picked = use.nonzero(as_tuple=True)
    if picked[0].numel() == 0:
        return speech
    T = speech.shape[-1]
    noise = torch.fft.irfft(shaped_spectra(tilted_magnitude(tilt[picked], T, sr), generator, channels=1)[:, 0], n=T)
    level = speech[picked].float().pow(2).mean(-1, keepdim=True).sqrt()
    noise = noise * level / noise.pow(2).mean(-1, keepdim=True).sqrt().clamp_min(1e-12)
    out = speech.clone()
    out[picked] = noise.to(speech.dtype)
    return out


def speech_magnitude(speech: torch.Tensor, T: int) -> torch.Tensor:
    """speech [B, S, T] dry segments -> [B, F]: each mixture's long-term speech amplitude spectrum, the mean over
    the batch's segments (speech-shaped noise: the spectrum of speech without its structure)."""
    power = torch.fft.rfft(speech.float(), n=T).abs().square().mean(dim=(0, 1))  # [F]
    return power.sqrt().expand(speech.shape[0], -1)


def babble(speech: torch.Tensor, talkers: int = 6) -> torch.Tensor:
    """speech [B, S, T] dry segments -> [B, 2, T]: per mixture and channel, the sum of `talkers` segments that
    follow the mixture's own S in the batch (two disjoint sets, so the channels are independent before
    impose_coherence; the mixture's own talkers are left out whenever the batch holds S + 2 talkers segments)."""
    B, S, T = speech.shape
    flat = speech.reshape(B * S, T)
    index = (torch.arange(B, device=speech.device)[:, None] * S + S
             + torch.arange(2 * talkers, device=speech.device)[None, :]) % (B * S)  # [B, 2 * talkers]
    picked = flat[index]
    return torch.stack((picked[:, :talkers].sum(1), picked[:, talkers:].sum(1)), dim=1)


def diffuse_noise(kind: torch.Tensor, speech: torch.Tensor, spacing: torch.Tensor, sr: int, sound_speed: float,
                  generator: torch.Generator) -> torch.Tensor:
    """kind long [B] (index into NOISE_KINDS), speech [B, S, T] (the batch's dry speech: spectrum and babble
    material), spacing [B] -> diffuse noise [B, 2, T] with unit mean power per mixture. Each kind is made only for
    the mixtures that drew it."""
    B, _, T = speech.shape
    device = speech.device
    kind = kind.to(device)
    spec = torch.zeros(B, 2, T // 2 + 1, dtype=torch.complex64, device=device)
    for index, name in enumerate(NOISE_KINDS):
        rows = (kind == index).nonzero()[:, 0]
        if rows.numel() == 0:
            continue
        if name == "pink":
            made = shaped_spectra(pink_magnitude(rows.numel(), T, sr, device), generator)
        elif name == "speech":
            made = shaped_spectra(speech_magnitude(speech, T)[: rows.numel()], generator)
        else:
            made = torch.fft.rfft(babble(speech)[rows].float(), n=T)
        spec[rows] = made.to(device)
    noise = torch.fft.irfft(coherent_spectra(spec, spacing, sr, sound_speed, T), n=T)
    return noise / noise.pow(2).mean(dim=(1, 2), keepdim=True).sqrt().clamp_min(1e-12)
