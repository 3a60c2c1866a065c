"""What an apply leaves on disk: the journal (runs, steps, phases, temporaries), the apply
lock, and the closed set of temporary kinds the journal records."""
