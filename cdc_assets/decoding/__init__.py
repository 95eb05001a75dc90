"""pgoutput bytes to frozen dataclasses; pure, standard library only."""
