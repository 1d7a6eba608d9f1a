//! Simulated DirectAdmin (tree writer + rewrite emulator). Being written.
