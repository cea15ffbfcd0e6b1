//! Wire formats of roadside traffic detectors, pure: bytes in, typed frames out, and back.
//!
//! A tour:
//! - [`stream`]: the [`FrameCodec`] trait every byte-stream protocol implements, and the
//!   [`StreamDecoder`] that buffers partial frames, resynchronises after garbage or a bad
//!   checksum and counts what it skipped. `Ok(None)` from a decoder means "need more bytes".
//! - [`model`]: the protocol-free [`Observation`]s (per-vehicle [`VehicleEvent`]s and
//!   per-lane [`IntervalReport`]s) that every format decodes into, so nothing downstream
//!   sees a protocol.
//! - One module per protocol: [`ft12`] (IEC 60870-5 FT1.2 link frames) with [`tls`] (the
//!   German TLS OSI7 container above it), [`ss125`] (Wavetronix SmartSensor 125 "Z1"
//!   binary), [`ss105`] (Wavetronix SS105 ASCII), [`rtms`] (RTMS G4), the text formats
//!   [`vlog`] (IRIS per-vehicle logs) and [`pems`] (PeMS 30-second CSV), and [`mqtt`]
//!   (JSON payloads: the project's own per-vehicle events and FIWARE `TrafficFlowObserved`).
//! - [`onvif`]: ONVIF analytics `tt:MetadataStream` documents (line crossings, counters,
//!   object tracks) as cameras send them over RTSP, gzipped or not, and the event
//!   notifications (`wsnt:Notify`, `wsnt:NotificationMessage`) cameras and bridges publish
//!   over MQTT; [`onvif::CountTracker`] turns running counts into vehicles.
//!
//! Nothing here does I/O, spawns or reads a clock; nothing panics on any input.
#![cfg_attr(
    not(test),
    deny(clippy::indexing_slicing, clippy::panic, clippy::unwrap_used)
)]

pub mod error;
pub mod model;
pub mod stream;

pub mod ft12;
pub mod mqtt;
pub mod onvif;
pub mod pems;
pub mod rtms;
pub mod ss105;
pub mod ss125;
pub mod tls;
pub mod vlog;

pub use error::{DecodeError, DecodeErrorKind, EncodeError};
pub use model::{
    ClassCounts, IntervalReport, Observation, Observations, VehicleClass, VehicleEvent,
};
pub use stream::{Decoded, FrameCodec, StreamDecoder, StreamStats, decode_all};
