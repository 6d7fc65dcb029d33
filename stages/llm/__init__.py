"""The language models the theme and script stages write with: chat backends, the local models, the prompts."""
