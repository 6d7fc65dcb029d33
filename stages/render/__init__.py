"""The render stage: the timeline drawn and encoded with ffmpeg (or MoviePy), its captions and their fonts."""
