"""Data sets the toolkit builds itself (`arr data`), so that its evaluations and recipes need
nothing outside the repository: `debian_desc` builds the Debian package-description set."""
