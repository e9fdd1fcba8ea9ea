"""The manifest: a file of prompts read, checked and turned into wanted rows before any spend."""
