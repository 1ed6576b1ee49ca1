"""Where the Safety Net graph meets storage: files and their layout."""
