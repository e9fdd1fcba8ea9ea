"""The review: a person's verdict on each clip (web page), and the approved clips exported."""
