//! (filled by its protocol's work)
