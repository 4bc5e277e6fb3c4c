"""Commands that look at things: `doctor` (the machine) and `preview` (contact sheets)."""
