"""Pure-Python domain: characters, stories (the script), poses and comic layout. No torch here."""
