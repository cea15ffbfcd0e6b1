//! The control-room service. Not built yet: issue #6.
