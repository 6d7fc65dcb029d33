"""What every stage may use: its context and errors, runtime, cache, file outputs, ffmpeg and text helpers."""
