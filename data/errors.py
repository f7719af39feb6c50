"""Typed reasons why a clip cannot be used. The pipeline skips such clips and counts them by `reason`."""
from __future__ import annotations


class ClipError(Exception):
    """Base class: a clip that is skipped (never fatal). `reason` keys the skipped-sample counters."""

    reason = "error"


class CorruptClip(ClipError):
    reason = "corrupt"


class NoAudioStream(ClipError):
    reason = "no_audio"


class NoVideoStream(ClipError):
    reason = "no_video"


class ClipTooShort(ClipError):
    reason = "too_short"


class BadMetadata(ClipError):
    """The sample's json is missing or unreadable, or a field the task needs (e.g. the label) is absent."""

    reason = "bad_metadata"


REASONS = ("corrupt", "no_audio", "no_video", "too_short", "bad_metadata", "read_error")
