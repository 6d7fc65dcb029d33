"""The script stage: the narration, written from sources when it has any, validated and mended."""
