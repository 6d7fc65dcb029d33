"""The theme stage: what the short is about, checked against its sources when it has any."""
