"""What a script can rest on: source texts, wiki lookups, passages that fit a topic, and checks against them."""
