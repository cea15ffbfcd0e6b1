//! Schema, migrations and the edge → centre sync protocol. Not built yet: issue #4.
