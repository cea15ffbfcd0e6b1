//! Dev-only test support (being built: issue #2).
