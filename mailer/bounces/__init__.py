"""Reports coming back: parsing bounces and complaints, reading mailboxes, applying policy."""
