"""People and lists: mailing lists, contacts and subscriptions, the suppression list, addresses."""
