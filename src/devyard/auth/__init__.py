"""Who is asking: passwords, browser sessions, API tokens, login throttling."""
