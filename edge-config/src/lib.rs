//! Edge box configuration (being built: issue #2).
