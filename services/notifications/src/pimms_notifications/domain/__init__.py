"""Pure notifications logic: who is told what, on which channel, in which words. No I/O."""
