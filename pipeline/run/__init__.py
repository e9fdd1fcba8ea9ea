"""The run: carry a plan out against the API (submit, track, download), every step journaled."""
