"""Source side: snapshots, slots, publications, change stream."""
