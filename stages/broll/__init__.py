"""The broll stage: candidate visuals from the user's folder, stock APIs, yt-dlp or the built-in libraries."""
