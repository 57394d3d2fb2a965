"""What every blueprint shares: htmx rendering, dialogs, forms, cookies."""
