//! JSON payloads received over MQTT. One MQTT message is one payload, so these are plain
//! functions over a whole byte slice, not a stream codec.
//!
//! - [`events`]: the project's own per-vehicle event schema (the contract for sensor
//!   integrators; documented there): [`decode_vehicle_events`], [`encode_vehicle_event`],
//!   [`encode_vehicle_events`].
//! - [`fiware`]: FIWARE `TrafficFlowObserved` entities (aggregated, NGSI-v2 keyValues or
//!   normalized form): [`decode_fiware`], [`encode_fiware`].
//!
//! # Errors
//!
//! Every failure is a [`DecodeError`] whose kind is [`DecodeErrorKind::Field`] naming the
//! JSON member at fault (`"lane"`, `"averageVehicleSpeed"`, …), or `"payload"` when the
//! JSON itself is malformed or has the wrong shape. `offset` is a byte offset into the
//! payload: for a member's value of the wrong type or out of range, where that value
//! starts; for malformed JSON, where serde_json stopped (its line/column converted to a
//! byte offset, so multi-line payloads are handled too; the column counts bytes, as
//! serde_json does).
//!
//! [`DecodeErrorKind::Field`]: crate::DecodeErrorKind::Field

pub mod events;
pub mod fiware;

pub use events::{
    VehicleEventMsg, decode_vehicle_events, encode_vehicle_event, encode_vehicle_events,
};
pub use fiware::{FiwareForm, TrafficFlowObserved, decode_fiware, encode_fiware};

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::DecodeError;

/// Field name used for errors about the payload as a whole.
pub(crate) const PAYLOAD: &str = "payload";

/// Byte offset of `part` inside `whole`, when `part` borrows from it (serde_json hands out
/// `RawValue`s that point into the input); 0 otherwise.
pub(crate) fn offset_of(whole: &[u8], part: &str) -> usize {
    let start = whole.as_ptr() as usize;
    let at = part.as_ptr() as usize;
    at.checked_sub(start)
        .filter(|o| *o <= whole.len())
        .unwrap_or(0)
}

/// The byte offset serde_json's 1-based line/column designates in `text`.
fn line_column_offset(text: &[u8], line: usize, column: usize) -> usize {
    let line_start = if line <= 1 {
        0
    } else {
        text.iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .nth(line - 2)
            .map_or(text.len(), |(i, _)| i + 1)
    };
    (line_start + column.saturating_sub(1)).min(text.len())
}

/// A serde_json error on `text` (which starts at `base` in the payload) as a field error.
pub(crate) fn json_error(
    text: &[u8],
    base: usize,
    field: &'static str,
    e: &serde_json::Error,
) -> DecodeError {
    let offset = base + line_column_offset(text, e.line(), e.column());
    let message = e.to_string();
    let reason = message
        .split(" at line ")
        .next()
        .unwrap_or_default()
        .to_string();
    DecodeError::field(offset, field, reason)
}

/// Parses `raw` (a slice of `payload`) as `T`, naming `field` in errors.
pub(crate) fn parse_raw<'a, T: Deserialize<'a>>(
    payload: &[u8],
    raw: &'a RawValue,
    field: &'static str,
) -> Result<T, DecodeError> {
    let text = raw.get();
    // `raw` is already well-formed JSON, so what can fail is the value's type or range:
    // point at the value's start rather than where serde_json stopped inside it.
    serde_json::from_str(text).map_err(|e| {
        let mut err = json_error(text.as_bytes(), 0, field, &e);
        err.offset = offset_of(payload, text);
        err
    })
}

/// The top-level JSON value of a payload.
pub(crate) fn root(payload: &[u8]) -> Result<&RawValue, DecodeError> {
    serde_json::from_slice(payload).map_err(|e| json_error(payload, 0, PAYLOAD, &e))
}

/// A value given as an array of objects or as one object.
pub(crate) fn objects<'a>(
    payload: &[u8],
    raw: &'a RawValue,
) -> Result<Vec<&'a RawValue>, DecodeError> {
    match raw.get().as_bytes().first() {
        Some(b'[') => {
            let list: Vec<&RawValue> = parse_raw(payload, raw, PAYLOAD)?;
            match list.iter().find(|o| !o.get().starts_with('{')) {
                Some(bad) => Err(DecodeError::field(
                    offset_of(payload, bad.get()),
                    PAYLOAD,
                    "array elements must be JSON objects",
                )),
                None => Ok(list),
            }
        }
        Some(b'{') => Ok(vec![raw]),
        _ => Err(DecodeError::field(
            offset_of(payload, raw.get()),
            PAYLOAD,
            "expected a JSON object or an array of objects",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_become_byte_offsets() {
        let text = b"{\n  \"a\": x\n}";
        let e = serde_json::from_slice::<serde_json::Value>(text).unwrap_err();
        let o = line_column_offset(text, e.line(), e.column());
        assert_eq!(text[o], b'x');
    }

    #[test]
    fn raw_values_point_into_the_payload() {
        let payload = br#"  {"a": [1, 2]}"#;
        let r = root(payload).unwrap();
        assert_eq!(offset_of(payload, r.get()), 2);
    }
}
