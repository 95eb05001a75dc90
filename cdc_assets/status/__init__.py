"""The status state machine and the reconciler's pure logic."""
