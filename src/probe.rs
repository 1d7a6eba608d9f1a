//! Live socket probe. Being written.
