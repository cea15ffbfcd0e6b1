//! (being built: issue #3)
