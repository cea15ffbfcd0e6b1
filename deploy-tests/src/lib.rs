//! Tests of the repository's deployment scripts (`scripts/backup`, `scripts/restore`)
//! against real services; the tests live in `tests/`. No library code.
