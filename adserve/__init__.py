"""adserve: an async ad-slot and recommendation server for news sites."""
