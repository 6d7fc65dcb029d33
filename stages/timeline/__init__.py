"""The timeline stage: narration, matches and candidates into the edit decision list."""
