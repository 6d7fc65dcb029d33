"""The tts stage: Kokoro narration with word times, its voices and its phonemisers."""
