//! The German TLS (Technische Lieferbedingungen für Streckenstationen, BASt) network and
//! application layers as carried in the user data of [`crate::ft12`] variable frames.
//!
//! The BASt TLS 2002/2012 text itself was not available; every fact below is taken from
//! public source code that implements it, named per fact. Nothing here is invented; what
//! could not be established is left generic (raw octets) and said so.
//!
//! # OSI 3 header (first octets of the FT1.2 user data)
//!
//! ```text
//! [control][routing address pair]×n [OSI 7 telegram…]
//! control: bit 7 = priority class 2, bits 5..3 = n (routing pairs), bits 2..0 = pointer
//! ```
//! Source: `TlsNetworkLayer` of `datenverteiler/de.bsvrz.kex.tls.osi2osi3` (the open TLS
//! stack of the German traffic-control reference software): it reads pointer = bits 2..0,
//! length = bits 5..3 with `1 + 2·length` header octets, rejects pointer > length, and sets
//! bit 7 for priority class 2; a link "reduced to the control octet" sends a single `00`.
//! A public TLS-over-IP client (`de.heuboe.tls`) sends `89 port address` ("Routing Länge 1").
//! Bit 6 has no known meaning; it is kept as [`Osi3Header::reserved`] so that octets
//! round-trip.
//!
//! # OSI 7 telegram ([`Osi7Container`])
//!
//! ```text
//! [node number u24 LE][count u8] then count × single telegram:
//! [len][FG][ID][job][block count] then block count × DE block: [len][DE channel][DE type][data…]
//! ```
//! - Both `len` octets count the octets *after* themselves (they do not include themselves).
//!   Source: `TelegramStructure` in `de.bsvrz.kex.tls.osi2osi3` (a single telegram occupies
//!   `1 + len` octets) and the `TlsTeleBuilder` test helper of `de.heuboe.tls` (single
//!   telegram length = octets − 1, DE block length = octets − 1), consistent with a
//!   published time-sync telegram (`0E FE 02 58 01 09 FF 12` + 7 time octets).
//! - ID is the "Richtung/Anwendungsidentifier", job the "Jobnummer" (same sources).
//! - DE channel 255 addresses the station itself / all DEs (e.g. time stamps); the DE type
//!   is defined per function group (FG).
//!
//! # FG 1 (traffic data) DE types mapped here ([`Fg1Block`])
//!
//! Layouts as decoded by the public `de.heuboe.tls` receiver test suite (tests
//! `test_1_4_48…`, `test_1_4_49…` to `test_1_4_52…`, `test_1_4_113…` to `test_1_4_116…`):
//!
//! | type | content |
//! |---|---|
//! | 48 | interval header (usually channel 255): hour (bit 7 = summer time), minute, second, interval kind, interval length |
//! | 49 / 113 | qKfz, qLkwÄ, vPkwÄ, vLkwÄ ("LVE result version 0") |
//! | 50 / 114 | + net time gap (0.1 s) (version 1) |
//! | 51 / 115 | + occupancy (%) (version 2) |
//! | 52 / 116 | + net time gap, occupancy, sKfz, vKfz (version 3) |
//!
//! Types 49–52 carry both counts as one octet, 113–116 as u16 LE (the test builder writes
//! 16-bit values little-endian). The net time gap is in tenths of a second (the tests
//! decode `153` as 15.3). Units not shown by those tests are inferred from the German
//! traffic-control software the same values feed (short-term data such as
//! `atg.verkehrsDatenKurzZeitFs`, and bitctrl's `KzdTestSender`, which draws qKfz, qLkw,
//! vPkw up to 140 and occupancy `b` up to 100): counts are vehicles per interval (qKfz all
//! vehicles, qLkwÄ the truck-like ones), speeds km/h, occupancy % (0–100). The
//! interval kind and length codes (type 48) are kept raw: their units are not established.
//! Other FG1 types (speed classes 53/117, versions 5/6, per-vehicle "Einzelfahrzeugdaten")
//! stay raw [`DeBlock`]s.
//!
//! Mapping to [`IntervalReport`] (a project decision, not taken from TLS): lane = DE channel;
//! volume = qKfz; speed_avg = count-weighted mean of vPkwÄ and vLkwÄ over the classes with
//! vehicles; occupancy = % / 100; gap_avg = net time gap. The TLS codes for "not
//! determinable" / "faulty" values were not found in public material, so an all-ones field
//! (`FF`, or `FFFF` for 16-bit counts) is read as "not said" (`None`): no real lane reaches
//! 255 km/h, 255 % or 65535 vehicles per short interval, so nothing real is lost. An
//! occupancy above 100 % is likewise `None`. Interval start and length stay `None` (type 48
//! has no date, and its length unit is unknown).
//!
//! Errors carry the offset of the offending octet within the slice handed to the decoder
//! (for [`decode_user_data`]: within the FT1.2 user data); a length that runs past the end
//! is reported at the length octet.

use crate::error::{DecodeError, DecodeErrorKind, EncodeError};
use crate::model::{IntervalReport, Observation, Observations};

/// The OSI 3 (network) header in front of every OSI 7 telegram.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Osi3Header {
    /// Bit 7: the telegram travels in priority class 2 (class 1 otherwise).
    pub priority_class_2: bool,
    /// Bit 6, meaning unknown; kept for round trips.
    pub reserved: bool,
    /// Bits 2..0: index of the current routing pair (0..=7, at most `routing.len()`).
    pub pointer: u8,
    /// The routing address pairs (at most 7).
    pub routing: Vec<[u8; 2]>,
}

impl Osi3Header {
    const PRIO2: u8 = 0x80;
    const RESERVED: u8 = 0x40;

    fn control(&self) -> Result<u8, EncodeError> {
        let n = u8::try_from(self.routing.len())
            .ok()
            .filter(|n| *n <= 7)
            .ok_or_else(|| EncodeError::new("routing", "more than 7 routing pairs"))?;
        if self.pointer > n {
            return Err(EncodeError::new("pointer", "points past the routing pairs"));
        }
        let mut c = (n << 3) | self.pointer;
        if self.priority_class_2 {
            c |= Self::PRIO2;
        }
        if self.reserved {
            c |= Self::RESERVED;
        }
        Ok(c)
    }

    /// Decodes the header at the start of `data`; returns it and the octets it occupies.
    pub fn decode(data: &[u8]) -> Result<(Self, usize), DecodeError> {
        let Some((&c, rest)) = data.split_first() else {
            return Err(DecodeError::new(0, DecodeErrorKind::Length(0)));
        };
        let n = usize::from((c >> 3) & 0x07);
        let pointer = c & 0x07;
        if usize::from(pointer) > n {
            return Err(DecodeError::field(
                0,
                "OSI 3 pointer",
                format!("pointer {pointer} exceeds {n} routing pairs"),
            ));
        }
        let Some(pairs) = rest.get(..2 * n) else {
            return Err(DecodeError::new(0, DecodeErrorKind::Length(1 + 2 * n)));
        };
        let routing = pairs
            .chunks_exact(2)
            .filter_map(|p| p.try_into().ok())
            .collect();
        let header = Self {
            priority_class_2: c & Self::PRIO2 != 0,
            reserved: c & Self::RESERVED != 0,
            pointer,
            routing,
        };
        Ok((header, 1 + 2 * n))
    }

    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.push(self.control()?);
        for pair in &self.routing {
            out.extend_from_slice(pair);
        }
        Ok(())
    }
}

/// A DE block: one data end device channel's data of one DE type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeBlock {
    /// DE channel number (255: the station itself / all DEs).
    pub channel: u8,
    /// DE type, defined per function group.
    pub de_type: u8,
    /// The type-specific octets.
    pub data: Vec<u8>,
}

impl DeBlock {
    /// The most data octets a block can carry (its length octet counts channel and type too).
    pub const MAX_DATA: usize = 253;
}

/// One single telegram ("Einzeltelegramm") of an OSI 7 telegram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Telegram {
    /// Function group (1: traffic data, 254: system/time, …).
    pub fg: u8,
    /// Direction / application identifier.
    pub id: u8,
    /// Job number.
    pub job: u8,
    pub blocks: Vec<DeBlock>,
}

/// An OSI 7 telegram: a node number and its single telegrams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Osi7Container {
    /// Node number ("Knotennummer"), 24 bits.
    pub node: u32,
    pub telegrams: Vec<Telegram>,
}

impl Osi7Container {
    pub const MAX_NODE: u32 = 0x00FF_FFFF;

    /// FG 1 blocks this crate understands, with their channel, in wire order. Blocks of
    /// unknown types are skipped; malformed known blocks are returned as errors (offsets
    /// within the block's data).
    pub fn fg1_blocks(&self) -> impl Iterator<Item = (u8, Result<Fg1Block, DecodeError>)> + '_ {
        self.telegrams
            .iter()
            .filter(|t| t.fg == fg1::FG)
            .flat_map(|t| t.blocks.iter())
            .filter_map(|b| Fg1Block::decode(b).transpose().map(|r| (b.channel, r)))
    }
}

impl Observations for Osi7Container {
    fn observations(&self, out: &mut Vec<Observation>) {
        for (channel, block) in self.fg1_blocks() {
            if let Ok(Fg1Block::Result(r)) = block {
                out.push(Observation::Interval(r.interval_report(channel.into())));
            }
        }
    }
}

/// The whole TLS content of one FT1.2 user data field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsUserData {
    pub osi3: Osi3Header,
    pub osi7: Osi7Container,
}

impl Observations for TlsUserData {
    fn observations(&self, out: &mut Vec<Observation>) {
        self.osi7.observations(out);
    }
}

/// Decodes FT1.2 user data: the OSI 3 header, then the OSI 7 telegram filling the rest.
pub fn decode_user_data(data: &[u8]) -> Result<TlsUserData, DecodeError> {
    let (osi3, n) = Osi3Header::decode(data)?;
    let rest = data.get(n..).unwrap_or_default();
    let osi7 = decode_container(rest).map_err(|mut e| {
        e.offset += n;
        e
    })?;
    Ok(TlsUserData { osi3, osi7 })
}

/// Encodes the OSI 3 header and OSI 7 telegram as FT1.2 user data.
pub fn encode_user_data(user_data: &TlsUserData, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    user_data.osi3.encode(out)?;
    encode_container(&user_data.osi7, out)
}

fn u24_le(octets: &[u8]) -> Option<u32> {
    match octets {
        [a, b, c] => Some(u32::from_le_bytes([*a, *b, *c, 0])),
        _ => None,
    }
}

/// Decodes a whole OSI 7 telegram; trailing octets after the last single telegram are an
/// error.
pub fn decode_container(data: &[u8]) -> Result<Osi7Container, DecodeError> {
    let (Some(node), Some(&count)) = (data.get(..3).and_then(u24_le), data.get(3)) else {
        return Err(DecodeError::new(0, DecodeErrorKind::Length(data.len())));
    };
    let mut at = 4;
    let mut telegrams = Vec::with_capacity(usize::from(count));
    for i in 0..count {
        let Some(&len) = data.get(at) else {
            return Err(DecodeError::field(
                at,
                "telegram count",
                format!("telegram ends after {i} of {count} single telegrams"),
            ));
        };
        let len = usize::from(len);
        let end = at + 1 + len;
        if len < 4 || end > data.len() {
            return Err(DecodeError::new(at, DecodeErrorKind::Length(len)));
        }
        telegrams.push(decode_telegram(data, at + 1, end)?);
        at = end;
    }
    if at != data.len() {
        return Err(DecodeError::field(
            at,
            "telegram count",
            format!("{} octets after the last single telegram", data.len() - at),
        ));
    }
    Ok(Osi7Container { node, telegrams })
}

/// `data[start..end]` is one single telegram after its length octet.
fn decode_telegram(data: &[u8], start: usize, end: usize) -> Result<Telegram, DecodeError> {
    let Some(&[fg, id, job, n_blocks]) = data.get(start..start + 4) else {
        return Err(DecodeError::new(start, DecodeErrorKind::Length(0)));
    };
    let mut at = start + 4;
    let mut blocks = Vec::with_capacity(usize::from(n_blocks));
    for i in 0..n_blocks {
        let Some(&len) = data.get(at).filter(|_| at < end) else {
            return Err(DecodeError::field(
                start + 3,
                "DE block count",
                format!("single telegram ends after {i} of {n_blocks} DE blocks"),
            ));
        };
        let len = usize::from(len);
        let block_end = at + 1 + len;
        if len < 2 || block_end > end {
            return Err(DecodeError::new(at, DecodeErrorKind::Length(len)));
        }
        let (Some(&channel), Some(&de_type), Some(payload)) = (
            data.get(at + 1),
            data.get(at + 2),
            data.get(at + 3..block_end),
        ) else {
            return Err(DecodeError::new(at, DecodeErrorKind::Length(len)));
        };
        blocks.push(DeBlock {
            channel,
            de_type,
            data: payload.to_vec(),
        });
        at = block_end;
    }
    if at != end {
        return Err(DecodeError::field(
            at,
            "DE block count",
            format!("{} octets after the last DE block", end - at),
        ));
    }
    Ok(Telegram {
        fg,
        id,
        job,
        blocks,
    })
}

/// Appends the wire form of an OSI 7 telegram.
pub fn encode_container(c: &Osi7Container, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    if c.node > Osi7Container::MAX_NODE {
        return Err(EncodeError::new("node", "node number exceeds 24 bits"));
    }
    let count = u8::try_from(c.telegrams.len())
        .map_err(|_| EncodeError::new("telegrams", "more than 255 single telegrams"))?;
    let mut wire = Vec::new();
    wire.extend(c.node.to_le_bytes().iter().take(3));
    wire.push(count);
    for t in &c.telegrams {
        let n_blocks = u8::try_from(t.blocks.len())
            .map_err(|_| EncodeError::new("blocks", "more than 255 DE blocks"))?;
        let mut body = vec![t.fg, t.id, t.job, n_blocks];
        for b in &t.blocks {
            let len = u8::try_from(2 + b.data.len())
                .map_err(|_| EncodeError::new("DE block", "more than 253 data octets"))?;
            body.extend([len, b.channel, b.de_type]);
            body.extend_from_slice(&b.data);
        }
        let len = u8::try_from(body.len())
            .map_err(|_| EncodeError::new("telegram", "single telegram longer than 255"))?;
        wire.push(len);
        wire.extend(body);
    }
    out.extend(wire);
    Ok(())
}

/// FG 1 (traffic data) constants.
pub mod fg1 {
    /// Function group number of traffic data.
    pub const FG: u8 = 1;
    /// Interval header (time of the interval and its kind and length codes).
    pub const TYPE_INTERVAL: u8 = 48;
    /// LVE result versions 0..=3 with one-octet counts: `49 + version`.
    pub const TYPE_RESULT_8BIT: u8 = 49;
    /// LVE result versions 0..=3 with u16 counts: `113 + version`.
    pub const TYPE_RESULT_16BIT: u8 = 113;
}

/// DE type 48: the interval the following results belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntervalHeader {
    /// 0..=23 as sent (local time of the station).
    pub hour: u8,
    /// Bit 7 of the hour octet.
    pub summer_time: bool,
    pub minute: u8,
    pub second: u8,
    /// Interval kind code, raw (meaning not established).
    pub kind: u8,
    /// Interval length code, raw (unit not established).
    pub length: u8,
}

/// The version-specific tail of an LVE result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LveExtra {
    /// Version 0: counts and speeds only.
    V0,
    /// Version 1: + net time gap in 0.1 s.
    V1 { net_gap_ds: u8 },
    /// Version 2: + occupancy in %.
    V2 { occupancy_pct: u8 },
    /// Version 3: + net time gap (0.1 s), occupancy (%), sKfz and vKfz (km/h).
    V3 {
        net_gap_ds: u8,
        occupancy_pct: u8,
        s_kfz: u8,
        v_kfz: u8,
    },
}

impl LveExtra {
    const fn version(self) -> u8 {
        match self {
            Self::V0 => 0,
            Self::V1 { .. } => 1,
            Self::V2 { .. } => 2,
            Self::V3 { .. } => 3,
        }
    }
}

/// DE types 49–52 / 113–116: one lane's (DE channel's) short-term result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LveResult {
    /// Types 113–116: the two counts are u16 LE (else one octet each).
    pub wide_counts: bool,
    /// All vehicles in the interval.
    pub q_kfz: u16,
    /// Truck-like vehicles in the interval.
    pub q_lkw: u16,
    /// Mean speed of car-like vehicles, km/h.
    pub v_pkw: u8,
    /// Mean speed of truck-like vehicles, km/h.
    pub v_lkw: u8,
    pub extra: LveExtra,
}

impl LveResult {
    /// The DE type this result is sent as.
    pub const fn de_type(&self) -> u8 {
        let base = if self.wide_counts {
            fg1::TYPE_RESULT_16BIT
        } else {
            fg1::TYPE_RESULT_8BIT
        };
        base + self.extra.version()
    }

    const fn count_missing(&self, q: u16) -> bool {
        if self.wide_counts {
            q == u16::MAX
        } else {
            q == 0xFF
        }
    }

    /// The protocol-free report (see the module docs for the mapping and its caveats).
    pub fn interval_report(&self, lane: u16) -> IntervalReport {
        let known = |v: u8| (v != 0xFF).then_some(v);
        let q_kfz = (!self.count_missing(self.q_kfz)).then_some(self.q_kfz);
        let q_lkw = (!self.count_missing(self.q_lkw)).then_some(self.q_lkw);
        let q_pkw = match (q_kfz, q_lkw) {
            (Some(all), Some(lkw)) => all.checked_sub(lkw),
            _ => None,
        };
        let mut weighted = 0f32;
        let mut counted = 0u32;
        let mut unknown = false;
        for (q, v) in [(q_pkw, self.v_pkw), (q_lkw, self.v_lkw)] {
            match (q, known(v)) {
                (Some(0), _) => {}
                (Some(q), Some(v)) => {
                    weighted += f32::from(q) * f32::from(v);
                    counted += u32::from(q);
                }
                _ => unknown = true,
            }
        }
        let speed_avg_kmh = (!unknown && counted > 0).then(|| weighted / counted as f32);
        let (net_gap, occupancy) = match self.extra {
            LveExtra::V0 => (None, None),
            LveExtra::V1 { net_gap_ds } => (known(net_gap_ds), None),
            LveExtra::V2 { occupancy_pct } => (None, Some(occupancy_pct)),
            LveExtra::V3 {
                net_gap_ds,
                occupancy_pct,
                ..
            } => (known(net_gap_ds), Some(occupancy_pct)),
        };
        let mut r = IntervalReport::on_lane(lane);
        r.volume = q_kfz.map(u32::from);
        r.speed_avg_kmh = speed_avg_kmh;
        r.occupancy = occupancy
            .filter(|p| *p <= 100)
            .map(|p| f32::from(p) / 100.0);
        r.gap_avg_s = net_gap.map(|d| f32::from(d) / 10.0);
        r
    }
}

/// The FG 1 DE types this crate interprets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fg1Block {
    Interval(IntervalHeader),
    Result(LveResult),
}

impl Fg1Block {
    /// Interprets an FG 1 DE block; `Ok(None)` for types not interpreted here. Error offsets
    /// count from the block's first data octet.
    pub fn decode(block: &DeBlock) -> Result<Option<Self>, DecodeError> {
        let d = block.data.as_slice();
        let wrong_len = |expected: usize| {
            DecodeError::field(
                d.len().min(expected),
                "DE block",
                format!(
                    "type {} carries {expected} octets, got {}",
                    block.de_type,
                    d.len()
                ),
            )
        };
        match block.de_type {
            fg1::TYPE_INTERVAL => match *d {
                [hour, minute, second, kind, length] => Ok(Some(Self::Interval(IntervalHeader {
                    hour: hour & 0x7F,
                    summer_time: hour & 0x80 != 0,
                    minute,
                    second,
                    kind,
                    length,
                }))),
                _ => Err(wrong_len(5)),
            },
            t @ (49..=52 | 113..=116) => {
                let wide = t >= fg1::TYPE_RESULT_16BIT;
                let version = if wide {
                    t - fg1::TYPE_RESULT_16BIT
                } else {
                    t - fg1::TYPE_RESULT_8BIT
                };
                let counts_len = if wide { 4 } else { 2 };
                let extra_len = match version {
                    0 => 0,
                    1 | 2 => 1,
                    _ => 4,
                };
                let expected = counts_len + 2 + extra_len;
                if d.len() != expected {
                    return Err(wrong_len(expected));
                }
                let (counts, rest) = d.split_at(counts_len);
                let (q_kfz, q_lkw) = match *counts {
                    [a, b] => (u16::from(a), u16::from(b)),
                    [a0, a1, b0, b1] => {
                        (u16::from_le_bytes([a0, a1]), u16::from_le_bytes([b0, b1]))
                    }
                    _ => return Err(wrong_len(expected)),
                };
                let (v_pkw, v_lkw, extra) = match (version, rest) {
                    (0, &[vp, vl]) => (vp, vl, LveExtra::V0),
                    (1, &[vp, vl, g]) => (vp, vl, LveExtra::V1 { net_gap_ds: g }),
                    (2, &[vp, vl, b]) => (vp, vl, LveExtra::V2 { occupancy_pct: b }),
                    (_, &[vp, vl, g, b, s, vk]) => (
                        vp,
                        vl,
                        LveExtra::V3 {
                            net_gap_ds: g,
                            occupancy_pct: b,
                            s_kfz: s,
                            v_kfz: vk,
                        },
                    ),
                    _ => return Err(wrong_len(expected)),
                };
                Ok(Some(Self::Result(LveResult {
                    wide_counts: wide,
                    q_kfz,
                    q_lkw,
                    v_pkw,
                    v_lkw,
                    extra,
                })))
            }
            _ => Ok(None),
        }
    }

    /// The DE block for `channel` carrying this data.
    pub fn to_block(&self, channel: u8) -> Result<DeBlock, EncodeError> {
        let (de_type, data) = match self {
            Self::Interval(h) => {
                if h.hour > 0x7F {
                    return Err(EncodeError::new("hour", "bit 7 is the summer time flag"));
                }
                let hour = h.hour | if h.summer_time { 0x80 } else { 0 };
                (
                    fg1::TYPE_INTERVAL,
                    vec![hour, h.minute, h.second, h.kind, h.length],
                )
            }
            Self::Result(r) => {
                let mut d = Vec::with_capacity(8);
                if r.wide_counts {
                    d.extend(r.q_kfz.to_le_bytes());
                    d.extend(r.q_lkw.to_le_bytes());
                } else {
                    for q in [r.q_kfz, r.q_lkw] {
                        d.push(u8::try_from(q).map_err(|_| {
                            EncodeError::new("count", "above 255 needs wide_counts")
                        })?);
                    }
                }
                d.extend([r.v_pkw, r.v_lkw]);
                match r.extra {
                    LveExtra::V0 => {}
                    LveExtra::V1 { net_gap_ds } => d.push(net_gap_ds),
                    LveExtra::V2 { occupancy_pct } => d.push(occupancy_pct),
                    LveExtra::V3 {
                        net_gap_ds,
                        occupancy_pct,
                        s_kfz,
                        v_kfz,
                    } => d.extend([net_gap_ds, occupancy_pct, s_kfz, v_kfz]),
                }
                (r.de_type(), d)
            }
        };
        Ok(DeBlock {
            channel,
            de_type,
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(extra: LveExtra) -> LveResult {
        LveResult {
            wide_counts: false,
            q_kfz: 10,
            q_lkw: 2,
            v_pkw: 100,
            v_lkw: 80,
            extra,
        }
    }

    #[test]
    fn osi3_header_bits() {
        // 0x89: priority class 2, one routing pair, pointer 1 (the published TLSoIP header)
        let (h, n) = Osi3Header::decode(&[0x89, 0x05, 0x07, 0xAA]).unwrap();
        assert_eq!(n, 3);
        assert!(h.priority_class_2 && !h.reserved);
        assert_eq!((h.pointer, h.routing.as_slice()), (1, &[[5, 7]][..]));
        let mut out = Vec::new();
        h.encode(&mut out).unwrap();
        assert_eq!(out, [0x89, 0x05, 0x07]);

        let (h, n) = Osi3Header::decode(&[0x00]).unwrap();
        assert_eq!((h, n), (Osi3Header::default(), 1));
        // pointer 2 > one pair
        assert_eq!(Osi3Header::decode(&[0x0A, 1, 2]).unwrap_err().offset, 0);
        // promises one pair, has none
        let e = Osi3Header::decode(&[0x08]).unwrap_err();
        assert_eq!(e.kind, DecodeErrorKind::Length(3));
        assert!(Osi3Header::decode(&[]).is_err());
    }

    #[test]
    fn container_length_errors_point_at_the_length_octet() {
        // node 1, one telegram whose len (5) runs past the end
        let data = [1, 0, 0, 1, 5, 1, 0x84, 0, 0];
        let e = decode_container(&data).unwrap_err();
        assert_eq!((e.offset, e.kind), (4, DecodeErrorKind::Length(5)));
        // a telegram too short for its header
        let e = decode_container(&[1, 0, 0, 1, 3, 1, 0x84, 0]).unwrap_err();
        assert_eq!((e.offset, e.kind), (4, DecodeErrorKind::Length(3)));
        // count says 2, only one present
        let e = decode_container(&[1, 0, 0, 2, 4, 1, 0x84, 0, 0]).unwrap_err();
        assert_eq!(e.offset, 9);
        // trailing octet
        let e = decode_container(&[1, 0, 0, 1, 4, 1, 0x84, 0, 0, 0xEE]).unwrap_err();
        assert_eq!(e.offset, 9);
        // block count says 1, no block
        let e = decode_container(&[1, 0, 0, 1, 4, 1, 0x84, 0, 1]).unwrap_err();
        assert_eq!(e.offset, 8);
        // block length 1 cannot hold channel and type
        let e = decode_container(&[1, 0, 0, 1, 6, 1, 0x84, 0, 1, 1, 33]).unwrap_err();
        assert_eq!((e.offset, e.kind), (9, DecodeErrorKind::Length(1)));
        assert!(decode_container(&[1, 0, 0]).is_err());
    }

    #[test]
    fn empty_container_round_trips() {
        let c = Osi7Container {
            node: 0x00AB_CDEF,
            telegrams: vec![],
        };
        let mut out = Vec::new();
        encode_container(&c, &mut out).unwrap();
        assert_eq!(out, [0xEF, 0xCD, 0xAB, 0]);
        assert_eq!(decode_container(&out).unwrap(), c);
        let too_big = Osi7Container {
            node: 0x0100_0000,
            telegrams: vec![],
        };
        assert!(encode_container(&too_big, &mut Vec::new()).is_err());
    }

    #[test]
    fn all_ones_and_empty_classes_are_not_data() {
        let mut r = result(LveExtra::V3 {
            net_gap_ds: 0xFF,
            occupancy_pct: 101,
            s_kfz: 0,
            v_kfz: 0,
        });
        r.v_lkw = 0xFF;
        let rep = r.interval_report(3);
        assert_eq!(rep.volume, Some(10));
        assert_eq!(
            rep.speed_avg_kmh, None,
            "truck speed unknown, trucks present"
        );
        assert_eq!((rep.occupancy, rep.gap_avg_s), (None, None));

        r.q_lkw = 0; // no trucks: their speed does not matter
        let rep = r.interval_report(3);
        assert_eq!(rep.speed_avg_kmh, Some(100.0));

        r.q_kfz = 0xFF;
        let rep = r.interval_report(3);
        assert_eq!((rep.volume, rep.speed_avg_kmh), (None, None));

        let mut w = result(LveExtra::V0);
        w.wide_counts = true;
        w.q_kfz = 0xFF; // a real count when counts are 16 bits wide
        assert_eq!(w.interval_report(1).volume, Some(255));
        w.q_kfz = u16::MAX;
        assert_eq!(w.interval_report(1).volume, None);
    }

    #[test]
    fn weighted_speed_and_units() {
        let r = result(LveExtra::V3 {
            net_gap_ds: 15,
            occupancy_pct: 12,
            s_kfz: 9,
            v_kfz: 97,
        });
        let rep = r.interval_report(7);
        assert_eq!(rep.lane, 7);
        // (8 cars · 100 + 2 trucks · 80) / 10
        assert_eq!(rep.speed_avg_kmh, Some(96.0));
        assert_eq!(rep.occupancy, Some(0.12));
        assert_eq!(rep.gap_avg_s, Some(1.5));
        assert_eq!((rep.start, rep.interval_s), (None, None));
        // fewer vehicles than trucks: inconsistent, no speed
        let mut bad = r;
        bad.q_lkw = 11;
        assert_eq!(bad.interval_report(7).speed_avg_kmh, None);
    }

    #[test]
    fn fg1_block_lengths_are_checked() {
        let short = DeBlock {
            channel: 33,
            de_type: 49,
            data: vec![1, 2, 3],
        };
        let e = Fg1Block::decode(&short).unwrap_err();
        assert_eq!(e.offset, 3);
        let long = DeBlock {
            channel: 33,
            de_type: 116,
            data: vec![0; 11],
        };
        assert_eq!(Fg1Block::decode(&long).unwrap_err().offset, 10);
        let unknown = DeBlock {
            channel: 33,
            de_type: 53,
            data: vec![],
        };
        assert_eq!(Fg1Block::decode(&unknown), Ok(None));
    }

    #[test]
    fn narrow_results_refuse_wide_counts() {
        let mut r = result(LveExtra::V0);
        r.q_kfz = 300;
        assert!(Fg1Block::Result(r).to_block(1).is_err());
        r.wide_counts = true;
        let b = Fg1Block::Result(r).to_block(1).unwrap();
        assert_eq!(b.de_type, 113);
        assert_eq!(b.data, [0x2C, 0x01, 2, 0, 100, 80]);
    }
}
