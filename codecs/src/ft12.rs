//! IEC 60870-5-1 frame format FT1.2 with the IEC 60870-5-2 link control field: the link
//! layer the German TLS uses on serial lines to counting stations (the [`crate::tls`] OSI 3/7
//! data rides in the user data of variable frames).
//!
//! Wire format (IEC 60870-5-1 frame format FT1.2 and the IEC 60870-5-2 control field, as
//! documented publicly for the -101/-102/-103 companion standards, e.g. Beckhoff's
//! "IEC 60870-5-10x telegram structure" pages and Wireshark's `iec60870_101` dissector
//! fields; the TLS use follows the open link layer `Tc57Frame` of the German
//! traffic-control reference software `datenverteiler/de.bsvrz.kex.tls.osi2osi3`):
//!
//! ```text
//! variable length   68 L L 68 C A… data… CS 16    L = 1 + address octets + len(data)
//! fixed length      10 C A… CS 16
//! single character  E5
//! ```
//!
//! - `CS` is the arithmetic sum modulo 256 of every octet from `C` up to the last user data
//!   octet (for the variable frame: everything between the second `68` and `CS`).
//! - `L` is repeated; both copies and the second `68` must match. `L` is one octet, so with
//!   the one-octet address used by TLS a frame carries at most 253 user data octets (the
//!   same limit `Tc57Frame` enforces).
//! - The link address field has 0, 1 or 2 octets by system configuration (the companion
//!   standards leave it to the system); multi-octet values are sent least significant
//!   octet first, as every multi-octet field of IEC 60870-5. TLS uses one octet, the
//!   default of [`Ft12::new`].
//! - Control field `C`: bit 7 RES (DIR in balanced mode), bit 6 PRM (message from the
//!   primary station), bit 5 FCB (primary) / ACD (secondary), bit 4 FCV (primary) / DFC
//!   (secondary), bits 3..0 the function code. See [`Control`] and [`function`].
//! - Single control character: `E5` acknowledges in place of a fixed frame (`Tc57Frame`
//!   sends it instead of a secondary frame with control octet `00` "ACK" or `09` "no
//!   data"). Whether FT1.2
//!   also has a second single character (`A2`, NACK) could not be confirmed from public
//!   material (the companion standard pages above name only `E5`), so `A2` is not
//!   accepted: it is garbage like any other octet that starts no frame.
//!
//! No units: this layer carries octets. The traffic data is in the TLS payload of variable
//! frames: [`Ft12Frame::tls`] decodes it (with errors), and the [`Observations`] impl of
//! [`Ft12Frame`] yields its observations.

use crate::error::{DecodeError, DecodeErrorKind, EncodeError};
use crate::model::{Observation, Observations};
use crate::stream::FrameCodec;
use crate::tls::{self, TlsUserData};

/// First octet of a variable length frame (and its repetition at offset 3).
pub const START_VARIABLE: u8 = 0x68;
/// First octet of a fixed length frame.
pub const START_FIXED: u8 = 0x10;
/// The single control character (positive acknowledgement).
pub const SINGLE_ACK: u8 = 0xE5;
/// Last octet of fixed and variable frames.
pub const END: u8 = 0x16;

/// Function codes of the control field (IEC 60870-5-2, unbalanced transmission).
///
/// The function code alone is ambiguous: its meaning depends on [`Control::is_primary`].
pub mod function {
    /// Primary (PRM = 1): reset of remote link.
    pub const RESET_REMOTE_LINK: u8 = 0;
    /// Primary: reset of user process.
    pub const RESET_USER_PROCESS: u8 = 1;
    /// Primary: user data, confirm expected (SEND/CONFIRM).
    pub const USER_DATA_CONFIRM: u8 = 3;
    /// Primary: user data, no reply expected (SEND/NO REPLY).
    pub const USER_DATA_NO_REPLY: u8 = 4;
    /// Primary: request for access demand.
    pub const REQUEST_ACCESS_DEMAND: u8 = 8;
    /// Primary: request status of link.
    pub const REQUEST_LINK_STATUS: u8 = 9;
    /// Primary: request user data class 1.
    pub const REQUEST_CLASS_1: u8 = 10;
    /// Primary: request user data class 2.
    pub const REQUEST_CLASS_2: u8 = 11;

    /// Secondary (PRM = 0): positive acknowledgement (ACK).
    pub const ACK: u8 = 0;
    /// Secondary: message not accepted, link busy (NACK).
    pub const NACK: u8 = 1;
    /// Secondary: user data (RESPOND).
    pub const USER_DATA: u8 = 8;
    /// Secondary: requested data not available (NACK "no data").
    pub const NO_DATA: u8 = 9;
    /// Secondary: status of link or access demand.
    pub const LINK_STATUS: u8 = 11;
}

/// The link control field `C`. Keeps all eight bits, so any octet round-trips.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Control(u8);

impl Control {
    /// Bit 7: RES in unbalanced transmission, DIR in balanced transmission.
    pub const DIR: u8 = 0x80;
    /// Bit 6: the message comes from the primary (initiating) station.
    pub const PRM: u8 = 0x40;
    /// Bit 5: frame count bit (primary) / access demand (secondary).
    pub const FCB_ACD: u8 = 0x20;
    /// Bit 4: frame count bit valid (primary) / data flow control (secondary).
    pub const FCV_DFC: u8 = 0x10;
    /// Bits 3..0: the function code.
    pub const FUNCTION_MASK: u8 = 0x0F;

    /// The control field as it is on the wire.
    pub const fn from_byte(byte: u8) -> Self {
        Self(byte)
    }

    /// A primary station's control field. `function` is masked to its four bits.
    pub const fn primary(function: u8, fcb: bool, fcv: bool) -> Self {
        let mut b = Self::PRM | (function & Self::FUNCTION_MASK);
        if fcb {
            b |= Self::FCB_ACD;
        }
        if fcv {
            b |= Self::FCV_DFC;
        }
        Self(b)
    }

    /// A secondary station's control field. `function` is masked to its four bits.
    pub const fn secondary(function: u8, acd: bool, dfc: bool) -> Self {
        let mut b = function & Self::FUNCTION_MASK;
        if acd {
            b |= Self::FCB_ACD;
        }
        if dfc {
            b |= Self::FCV_DFC;
        }
        Self(b)
    }

    pub const fn byte(self) -> u8 {
        self.0
    }

    /// PRM: sent by the primary (polling) station.
    pub const fn is_primary(self) -> bool {
        self.0 & Self::PRM != 0
    }

    /// Bit 7 (RES / DIR).
    pub const fn dir(self) -> bool {
        self.0 & Self::DIR != 0
    }

    /// Frame count bit; meaningful in primary messages.
    pub const fn fcb(self) -> bool {
        self.is_primary() && self.0 & Self::FCB_ACD != 0
    }

    /// Frame count bit valid; meaningful in primary messages.
    pub const fn fcv(self) -> bool {
        self.is_primary() && self.0 & Self::FCV_DFC != 0
    }

    /// Access demand (class 1 data waiting); meaningful in secondary messages.
    pub const fn acd(self) -> bool {
        !self.is_primary() && self.0 & Self::FCB_ACD != 0
    }

    /// Data flow control (secondary cannot take more data); meaningful in secondary messages.
    pub const fn dfc(self) -> bool {
        !self.is_primary() && self.0 & Self::FCV_DFC != 0
    }

    /// The four-bit function code (see [`function`]).
    pub const fn function(self) -> u8 {
        self.0 & Self::FUNCTION_MASK
    }
}

/// The single control characters. Only `E5` is accepted (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SingleChar {
    /// `E5`: positive acknowledgement.
    Ack,
}

impl SingleChar {
    pub const fn byte(self) -> u8 {
        match self {
            Self::Ack => SINGLE_ACK,
        }
    }
}

/// One FT1.2 frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ft12Frame {
    /// A single control character.
    Single(SingleChar),
    /// `10 C A CS 16`: link service without user data.
    Fixed { control: Control, address: u16 },
    /// `68 L L 68 C A data CS 16`: user data (in TLS: an OSI 3 header and an OSI 7 telegram).
    Variable {
        control: Control,
        address: u16,
        data: Vec<u8>,
    },
}

impl Ft12Frame {
    /// The control field, when the frame has one.
    pub fn control(&self) -> Option<Control> {
        match self {
            Self::Single(_) => None,
            Self::Fixed { control, .. } | Self::Variable { control, .. } => Some(*control),
        }
    }

    /// The link address, when the frame has one.
    pub fn address(&self) -> Option<u16> {
        match self {
            Self::Single(_) => None,
            Self::Fixed { address, .. } | Self::Variable { address, .. } => Some(*address),
        }
    }

    /// The user data of a variable frame.
    pub fn user_data(&self) -> Option<&[u8]> {
        match self {
            Self::Variable { data, .. } => Some(data),
            _ => None,
        }
    }

    /// The TLS OSI 3 header and OSI 7 telegram carried by a variable frame; `None` for
    /// frames without user data. Error offsets count from the first user data octet.
    pub fn tls(&self) -> Option<Result<TlsUserData, DecodeError>> {
        self.user_data().map(tls::decode_user_data)
    }
}

/// In this product FT1.2 only ever carries TLS, so a frame's observations are those of its
/// TLS payload. User data that is not valid TLS adds nothing here; callers that must count
/// such errors use [`Ft12Frame::tls`] instead.
impl Observations for Ft12Frame {
    fn observations(&self, out: &mut Vec<Observation>) {
        if let Some(Ok(user_data)) = self.tls() {
            user_data.osi7.observations(out);
        }
    }
}

/// The FT1.2 codec. The link address length is a system parameter (0, 1 or 2 octets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ft12 {
    address_len: usize,
}

impl Default for Ft12 {
    fn default() -> Self {
        Self::new()
    }
}

impl Ft12 {
    /// One-octet link addresses, as used by TLS.
    pub const fn new() -> Self {
        Self { address_len: 1 }
    }

    /// A codec for 0-, 1- or 2-octet link addresses; `None` for any other length.
    pub const fn with_address_len(address_len: usize) -> Option<Self> {
        if address_len <= 2 {
            Some(Self { address_len })
        } else {
            None
        }
    }

    pub const fn address_len(&self) -> usize {
        self.address_len
    }

    /// The most user data octets one variable frame can carry with this address length.
    pub const fn max_user_data(&self) -> usize {
        255 - 1 - self.address_len
    }

    /// Smallest allowed `L`: control field and address, no user data.
    const fn min_l(&self) -> usize {
        1 + self.address_len
    }

    fn read_address(&self, octets: &[u8]) -> u16 {
        octets
            .iter()
            .rev()
            .fold(0u16, |acc, b| (acc << 8) | u16::from(*b))
    }

    fn push_address(&self, address: u16, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let fits = match self.address_len {
            0 => address == 0,
            1 => address <= 0xFF,
            _ => true,
        };
        if !fits {
            return Err(EncodeError::new(
                "address",
                format!(
                    "{address} does not fit in {} address octet(s)",
                    self.address_len
                ),
            ));
        }
        out.extend(address.to_le_bytes().iter().take(self.address_len));
        Ok(())
    }

    fn decode_fixed(&self, buf: &[u8]) -> Result<Option<(Ft12Frame, usize)>, DecodeError> {
        let cs_at = 2 + self.address_len;
        let (Some(body), Some(&cs), Some(&end)) =
            (buf.get(1..cs_at), buf.get(cs_at), buf.get(cs_at + 1))
        else {
            return Ok(None);
        };
        check_sum(body, cs, cs_at)?;
        if end != END {
            return Err(DecodeError::new(cs_at + 1, DecodeErrorKind::BadEnd));
        }
        let (control, address) = match body.split_first() {
            Some((c, a)) => (Control(*c), self.read_address(a)),
            None => return Err(DecodeError::new(1, DecodeErrorKind::Length(0))),
        };
        Ok(Some((Ft12Frame::Fixed { control, address }, cs_at + 2)))
    }

    fn decode_variable(&self, buf: &[u8]) -> Result<Option<(Ft12Frame, usize)>, DecodeError> {
        let Some(&l) = buf.get(1) else {
            return Ok(None);
        };
        let l = usize::from(l);
        if l < self.min_l() {
            return Err(DecodeError::new(1, DecodeErrorKind::Length(l)));
        }
        let Some(&l_copy) = buf.get(2) else {
            return Ok(None);
        };
        if usize::from(l_copy) != l {
            return Err(DecodeError::field(
                2,
                "length copy",
                format!("L is {l} but its copy is {l_copy}"),
            ));
        }
        let Some(&start2) = buf.get(3) else {
            return Ok(None);
        };
        if start2 != START_VARIABLE {
            return Err(DecodeError::field(
                3,
                "second start octet",
                format!("{start2:#04x} instead of 0x68"),
            ));
        }
        let cs_at = 4 + l;
        let (Some(body), Some(&cs), Some(&end)) =
            (buf.get(4..cs_at), buf.get(cs_at), buf.get(cs_at + 1))
        else {
            return Ok(None);
        };
        check_sum(body, cs, cs_at)?;
        if end != END {
            return Err(DecodeError::new(cs_at + 1, DecodeErrorKind::BadEnd));
        }
        let Some((c, rest)) = body.split_first() else {
            return Err(DecodeError::new(1, DecodeErrorKind::Length(l)));
        };
        let (address, data) = rest.split_at(self.address_len.min(rest.len()));
        let frame = Ft12Frame::Variable {
            control: Control(*c),
            address: self.read_address(address),
            data: data.to_vec(),
        };
        Ok(Some((frame, cs_at + 2)))
    }
}

fn sum(octets: &[u8]) -> u8 {
    octets.iter().fold(0u8, |a, b| a.wrapping_add(*b))
}

fn check_sum(body: &[u8], carried: u8, cs_at: usize) -> Result<(), DecodeError> {
    let computed = sum(body);
    if computed == carried {
        Ok(())
    } else {
        Err(DecodeError::new(
            cs_at,
            DecodeErrorKind::Checksum {
                carried: carried.into(),
                computed: computed.into(),
            },
        ))
    }
}

impl FrameCodec for Ft12 {
    type Frame = Ft12Frame;
    const NAME: &'static str = "ft12";
    /// `68 L L 68` + 255 octets + `CS 16`.
    const MAX_FRAME_LEN: usize = 4 + 255 + 2;

    fn decode(&self, buf: &[u8]) -> Result<Option<(Ft12Frame, usize)>, DecodeError> {
        match buf.first() {
            None => Ok(None),
            Some(&SINGLE_ACK) => Ok(Some((Ft12Frame::Single(SingleChar::Ack), 1))),
            Some(&START_FIXED) => self.decode_fixed(buf),
            Some(&START_VARIABLE) => self.decode_variable(buf),
            Some(_) => Err(DecodeError::new(0, DecodeErrorKind::BadStart)),
        }
    }

    fn encode(&self, frame: &Ft12Frame, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        match frame {
            Ft12Frame::Single(c) => out.push(c.byte()),
            Ft12Frame::Fixed { control, address } => {
                let mut body = vec![control.byte()];
                self.push_address(*address, &mut body)?;
                out.push(START_FIXED);
                out.extend_from_slice(&body);
                out.extend([sum(&body), END]);
            }
            Ft12Frame::Variable {
                control,
                address,
                data,
            } => {
                if data.len() > self.max_user_data() {
                    return Err(EncodeError::new(
                        "data",
                        format!(
                            "{} user data octets, at most {} fit",
                            data.len(),
                            self.max_user_data()
                        ),
                    ));
                }
                let mut body = Vec::with_capacity(1 + self.address_len + data.len());
                body.push(control.byte());
                self.push_address(*address, &mut body)?;
                body.extend_from_slice(data);
                let l = u8::try_from(body.len())
                    .map_err(|_| EncodeError::new("data", "frame longer than L allows"))?;
                out.extend([START_VARIABLE, l, l, START_VARIABLE]);
                out.extend_from_slice(&body);
                out.extend([sum(&body), END]);
            }
        }
        Ok(())
    }

    fn could_start(&self, tail: &[u8]) -> bool {
        match tail.first() {
            Some(&SINGLE_ACK) => true,
            Some(&START_FIXED) => {
                // With the whole frame in view, a false start fails its checksum or end octet.
                let cs_at = 2 + self.address_len;
                match (tail.get(1..cs_at), tail.get(cs_at), tail.get(cs_at + 1)) {
                    (Some(body), Some(&cs), Some(&end)) => sum(body) == cs && end == END,
                    (Some(body), Some(&cs), None) => sum(body) == cs,
                    _ => true,
                }
            }
            Some(&START_VARIABLE) => {
                let l_ok = tail.get(1).is_none_or(|&l| usize::from(l) >= self.min_l());
                let copy_ok = match (tail.get(1), tail.get(2)) {
                    (Some(l), Some(copy)) => l == copy,
                    _ => true,
                };
                let start2_ok = tail.get(3).is_none_or(|&s| s == START_VARIABLE);
                l_ok && copy_ok && start2_ok
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(codec: Ft12, frame: &Ft12Frame) -> Vec<u8> {
        let mut out = Vec::new();
        codec.encode(frame, &mut out).unwrap();
        out
    }

    #[test]
    fn control_bits_and_constructors_agree() {
        let c = Control::primary(function::REQUEST_CLASS_2, true, true);
        assert_eq!(c.byte(), 0x7B);
        assert!(c.is_primary() && c.fcb() && c.fcv());
        assert!(!c.acd() && !c.dfc());
        assert_eq!(c.function(), 11);

        let s = Control::secondary(function::USER_DATA, true, false);
        assert_eq!(s.byte(), 0x28);
        assert!(!s.is_primary() && s.acd() && !s.dfc());
        assert!(!s.fcb(), "FCB is a primary bit");
        assert_eq!(s.function(), function::USER_DATA);

        assert_eq!(Control::primary(0x1F, false, false).function(), 0x0F);
        assert!(Control::from_byte(0xC0).dir());
    }

    #[test]
    fn empty_and_unknown_starts() {
        assert_eq!(Ft12::new().decode(&[]), Ok(None));
        let e = Ft12::new().decode(&[0xA2]).unwrap_err();
        assert_eq!((e.offset, e.kind), (0, DecodeErrorKind::BadStart));
    }

    #[test]
    fn length_below_control_and_address_is_rejected_at_once() {
        let e = Ft12::new().decode(&[0x68, 0x01]).unwrap_err();
        assert_eq!((e.offset, e.kind), (1, DecodeErrorKind::Length(1)));
        // without an address field, L = 1 (control only) is fine
        let codec = Ft12::with_address_len(0).unwrap();
        assert_eq!(codec.decode(&[0x68, 0x01, 0x01, 0x68]), Ok(None));
        let e = codec.decode(&[0x68, 0x00]).unwrap_err();
        assert_eq!(e.kind, DecodeErrorKind::Length(0));
    }

    #[test]
    fn mismatched_length_copy_and_second_start() {
        let e = Ft12::new().decode(&[0x68, 0x03, 0x04]).unwrap_err();
        assert_eq!(e.offset, 2);
        assert_eq!(e.kind.label(), "field");
        let e = Ft12::new().decode(&[0x68, 0x03, 0x03, 0x10]).unwrap_err();
        assert_eq!(e.offset, 3);
    }

    #[test]
    fn two_octet_addresses_are_little_endian_and_summed() {
        let codec = Ft12::with_address_len(2).unwrap();
        let f = Ft12Frame::Fixed {
            control: Control::from_byte(0x49),
            address: 0x1234,
        };
        // 0x49 + 0x34 + 0x12 = 0x8F
        assert_eq!(wire(codec, &f), [0x10, 0x49, 0x34, 0x12, 0x8F, 0x16]);
        let (g, n) = codec.decode(&wire(codec, &f)).unwrap().unwrap();
        assert_eq!((g, n), (f, 6));
        assert!(Ft12::with_address_len(3).is_none());
    }

    #[test]
    fn encode_rejects_what_the_wire_cannot_carry() {
        let codec = Ft12::new();
        let too_long = Ft12Frame::Variable {
            control: Control::from_byte(0x08),
            address: 1,
            data: vec![0; 254],
        };
        assert!(codec.encode(&too_long, &mut Vec::new()).is_err());
        let fits = Ft12Frame::Variable {
            control: Control::from_byte(0x08),
            address: 1,
            data: vec![0; 253],
        };
        assert_eq!(wire(codec, &fits).len(), Ft12::MAX_FRAME_LEN);
        let wide = Ft12Frame::Fixed {
            control: Control::from_byte(0x49),
            address: 256,
        };
        assert!(codec.encode(&wide, &mut Vec::new()).is_err());
    }

    #[test]
    fn could_start_cuts_false_variable_starts() {
        let c = Ft12::new();
        assert!(c.could_start(&[0x68]));
        assert!(c.could_start(&[0x68, 0x05, 0x05, 0x68]));
        assert!(!c.could_start(&[0x68, 0x05, 0x06]));
        assert!(!c.could_start(&[0x68, 0x05, 0x05, 0x67]));
        assert!(!c.could_start(&[0x68, 0x00]));
        assert!(c.could_start(&[0x10, 0x49, 0x01, 0x4A, 0x16]));
        assert!(!c.could_start(&[0x10, 0x49, 0x01, 0x4B]));
        assert!(!c.could_start(&[0x10, 0x49, 0x01, 0x4A, 0x17]));
        assert!(c.could_start(&[0xE5]));
        assert!(!c.could_start(&[0xA2]));
    }

    #[test]
    fn frames_without_tls_payload_observe_nothing() {
        let mut out = Vec::new();
        Ft12Frame::Single(SingleChar::Ack).observations(&mut out);
        Ft12Frame::Variable {
            control: Control::from_byte(0x08),
            address: 1,
            data: vec![0xFF],
        }
        .observations(&mut out);
        assert!(out.is_empty());
        assert!(Ft12Frame::Single(SingleChar::Ack).tls().is_none());
    }
}
