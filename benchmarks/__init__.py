"""`make bench`: figures for how close videobatch runs to the rate-limit floor (see __main__)."""
